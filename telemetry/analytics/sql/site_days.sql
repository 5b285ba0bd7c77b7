-- The state of every site at the end of @day: the row of the day before,
-- shifted by one day, combined with @day's track and deactivate pings
-- (mozilla/bigquery-etl's clients_last_seen, one bit per day).
--
-- Reads: site_days of the day before, sites and deactivations of @day.
-- Writes: site_days of @day, replaced whole in one atomic MERGE (ON FALSE:
-- every new row is inserted, every old row of @day deleted).
MERGE `{dataset}.site_days` AS target
USING (
  WITH
    -- Named columns, not *: bqemulator expands * from its catalog, which misses a column
    -- added to an existing table.
    previous AS (
      SELECT
        hash, url, days_seen_bits, last_seen_at, deactivated_at, project_version, wp_version, php_version,
        mysql_version, server_software, locale, multisite, theme, plugins, custom_fields, country, hosting
      FROM `{dataset}.site_days`
      WHERE day = DATE_SUB(@day, INTERVAL 1 DAY)
    ),
    pinged AS (
      -- The latest track ping of each site that day; ping_id breaks a tie.
      SELECT
        hash, url, received_at, project_version, wp_version, php_version, mysql_version,
        server_software, locale, multisite,
        COALESCE(NULLIF(theme_name, ''), theme_slug) AS theme,
        ARRAY(SELECT DISTINCT plugin.slug FROM UNNEST(plugins) AS plugin WHERE plugin.slug IS NOT NULL) AS plugins,
        custom_fields,
        country,
        hosting
      FROM `{dataset}.sites`
      WHERE received_at >= TIMESTAMP(@day) AND received_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
        AND status = 'active'
      QUALIFY ROW_NUMBER() OVER (PARTITION BY hash, url ORDER BY received_at DESC, ping_id DESC) = 1
    ),
    deactivated AS (
      SELECT hash, url, MAX(received_at) AS deactivated_at
      FROM `{dataset}.deactivations`
      WHERE received_at >= TIMESTAMP(@day) AND received_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
      GROUP BY hash, url
    ),
    sites AS (
      SELECT hash, url FROM previous
      UNION DISTINCT SELECT hash, url FROM pinged
      UNION DISTINCT SELECT hash, url FROM deactivated
    ),
    combined AS (
      SELECT
        s.hash,
        s.url,
        ((IFNULL(p.days_seen_bits, 0) << 1) & @kept_days_mask) | IF(t.url IS NULL, 0, 1) AS days_seen_bits,
        IF(t.url IS NULL, p.last_seen_at, t.received_at) AS last_seen_at,
        CASE
          WHEN d.deactivated_at IS NULL THEN p.deactivated_at
          WHEN p.deactivated_at IS NULL OR d.deactivated_at > p.deactivated_at THEN d.deactivated_at
          ELSE p.deactivated_at
        END AS deactivated_at,
        IF(t.url IS NULL, p.project_version, t.project_version) AS project_version,
        IF(t.url IS NULL, p.wp_version, t.wp_version) AS wp_version,
        IF(t.url IS NULL, p.php_version, t.php_version) AS php_version,
        IF(t.url IS NULL, p.mysql_version, t.mysql_version) AS mysql_version,
        IF(t.url IS NULL, p.server_software, t.server_software) AS server_software,
        IF(t.url IS NULL, p.locale, t.locale) AS locale,
        IF(t.url IS NULL, p.multisite, t.multisite) AS multisite,
        IF(t.url IS NULL, p.theme, t.theme) AS theme,
        IF(t.url IS NULL, p.plugins, t.plugins) AS plugins,
        IF(t.url IS NULL, p.custom_fields, t.custom_fields) AS custom_fields,
        IF(t.url IS NULL, p.country, t.country) AS country,
        IF(t.url IS NULL, p.hosting, t.hosting) AS hosting
      FROM sites AS s
      LEFT JOIN previous AS p ON p.hash = s.hash AND p.url = s.url
      LEFT JOIN pinged AS t ON t.hash = s.hash AND t.url = s.url
      LEFT JOIN deactivated AS d ON d.hash = s.hash AND d.url = s.url
    )
  -- A site unseen for all the kept days drops out; it is inactive under any window.
  SELECT * FROM combined WHERE days_seen_bits != 0
) AS source
ON FALSE
WHEN NOT MATCHED THEN
  INSERT (
    day, hash, url, days_seen_bits, last_seen_at, deactivated_at, project_version, wp_version,
    php_version, mysql_version, server_software, locale, multisite, theme, plugins, custom_fields, country, hosting
  )
  VALUES (
    @day, source.hash, source.url, source.days_seen_bits, source.last_seen_at, source.deactivated_at,
    source.project_version, source.wp_version, source.php_version, source.mysql_version,
    source.server_software, source.locale, source.multisite, source.theme, source.plugins,
    source.custom_fields, source.country, source.hosting
  )
WHEN NOT MATCHED BY SOURCE AND target.day = @day THEN
  DELETE
