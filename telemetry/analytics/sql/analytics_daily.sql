-- Every figure of @day, per project: one row per (hash, metric), as defined in
-- docs/analytics.md, metric names from telemetry/analytics/metrics.py.
--
-- Reads: site_days of @day (each site's latest attributes: versions, custom
-- fields, hosting labels), site_first_seen (every site's first day, one
-- small row per site), deactivations and
-- tracking_skipped of @day. Writes: analytics_daily of @day, replaced whole in
-- one atomic MERGE.
MERGE `{dataset}.analytics_daily` AS target
USING (
  WITH
    -- Named columns, not *: bqemulator expands * from its catalog, which misses a column
    -- added to an existing table (BigQuery reads only the columns used either way).
    state AS (
      SELECT
        hash, url, days_seen_bits, last_seen_at, deactivated_at, project_version, wp_version, php_version,
        mysql_version, server_software, locale, multisite, theme, plugins, custom_fields, country, hosting
      FROM `{dataset}.site_days`
      WHERE day = @day
    ),
    -- Seen within the window, and no deactivation since the latest track ping.
    active AS (
      SELECT * FROM state
      WHERE (days_seen_bits & @window_mask) != 0
        AND (deactivated_at IS NULL OR deactivated_at < last_seen_at)
    ),
    deactivations AS (
      SELECT hash, url, received_at, reason_id
      FROM `{dataset}.deactivations`
      WHERE received_at >= TIMESTAMP(@day) AND received_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
    ),
    declined AS (
      -- Sites that chose not to share, the first time they were asked.
      SELECT hash, COUNTIF(previously_skipped IS NOT TRUE) AS declined
      FROM `{dataset}.tracking_skipped`
      WHERE received_at >= TIMESTAMP(@day) AND received_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
      GROUP BY hash
    ),
    new_sites AS (
      SELECT hash, COUNT(*) AS new_sites FROM `{dataset}.site_first_seen` WHERE first_seen = @day GROUP BY hash
    ),
    active_counts AS (
      SELECT hash, COUNT(*) AS active_sites FROM active GROUP BY hash
    ),
    deactivation_counts AS (
      SELECT hash, COUNT(*) AS deactivations FROM deactivations GROUP BY hash
    ),
    projects AS (
      SELECT hash FROM state
      UNION DISTINCT SELECT hash FROM deactivations
      UNION DISTINCT SELECT hash FROM declined
    ),
    counts AS (
      SELECT
        p.hash,
        IFNULL(a.active_sites, 0) AS active_sites,
        IFNULL(n.new_sites, 0) AS new_sites,
        IFNULL(d.deactivations, 0) AS deactivations,
        IFNULL(s.declined, 0) AS declined
      FROM projects AS p
      LEFT JOIN active_counts AS a ON a.hash = p.hash
      LEFT JOIN new_sites AS n ON n.hash = p.hash
      LEFT JOIN deactivation_counts AS d ON d.hash = p.hash
      LEFT JOIN declined AS s ON s.hash = p.hash
    ),
    scalars AS (
      SELECT hash, 'active_sites' AS metric, CAST(active_sites AS FLOAT64) AS value FROM counts
      UNION ALL SELECT hash, 'new_sites', CAST(new_sites AS FLOAT64) FROM counts
      UNION ALL SELECT hash, 'deactivations', CAST(deactivations AS FLOAT64) FROM counts
      UNION ALL SELECT hash, 'opt_in_rate', SAFE_DIVIDE(new_sites, new_sites + declined) FROM counts
    ),
    -- One (hash, metric, label) per active site and distribution, and per deactivation.
    -- Whole UTC days from each deactivated site's first track ping; NULL when it has none
    -- up to @day (a deactivate ping before any track ping).
    deactivation_ages AS (
      SELECT d.hash, DATE_DIFF(DATE(d.received_at), f.first_seen, DAY) AS age
      FROM deactivations AS d
      LEFT JOIN `{dataset}.site_first_seen` AS f ON f.hash = d.hash AND f.url = d.url AND f.first_seen <= @day
    ),
    -- Custom fields: each active site's value of each `extra` key it holds (text, a number
    -- or true/false as sent, an array or object as compact JSON), cut to @max_label_chars
    -- characters; null or blank: no value. The keys are the project's whitelist (the
    -- pipelines keep no other); the values are whatever the sites sent.
    custom_values AS (
      SELECT
        hash,
        url,
        key,
        SUBSTR(
          CASE
            WHEN JSON_VALUE(value) IS NOT NULL THEN NULLIF(TRIM(JSON_VALUE(value)), '')
            WHEN TO_JSON_STRING(value) != 'null' THEN TO_JSON_STRING(value)
          END,
          1,
          @max_label_chars
        ) AS label
      FROM (
        SELECT a.hash, a.url, key, PARSE_JSON(a.custom_fields, wide_number_mode => 'round')[key] AS value
        FROM active AS a, UNNEST(JSON_KEYS(PARSE_JSON(a.custom_fields, wide_number_mode => 'round'), 1)) AS key
      )
    ),
    custom_keys AS (
      SELECT DISTINCT hash, key FROM custom_values
    ),
    -- The distributions in one pass over the active sites, a row per site and metric: BigQuery
    -- evaluates a CTE at each reference, and each reference of `active` reads the day's site_days.
    raw_labels AS (
      SELECT
        a.hash,
        metric,
        CASE metric
          WHEN 'project_version' THEN NULLIF(TRIM(a.project_version), '')
          WHEN 'wp_version' THEN REGEXP_EXTRACT(a.wp_version, r'^\s*(\d+\.\d+)')
          WHEN 'php_version' THEN REGEXP_EXTRACT(a.php_version, r'^\s*(\d+\.\d+)')
          WHEN 'mysql_version' THEN
            CASE
              -- `10.6.16-MariaDB`, `5.5.5-10.11.6-MariaDB-0+deb12u1`: the version before `-MariaDB`.
              WHEN REGEXP_CONTAINS(LOWER(a.mysql_version), r'\d+\.\d+(\.\d+)?-mariadb')
                THEN CONCAT('MariaDB ', REGEXP_EXTRACT(LOWER(a.mysql_version), r'(\d+\.\d+)(?:\.\d+)?-mariadb'))
              -- A bare `10.6.16`: no MySQL has major 10 or 11.
              WHEN REGEXP_CONTAINS(a.mysql_version, r'^\s*1[01]\.\d+')
                THEN CONCAT('MariaDB ', REGEXP_EXTRACT(a.mysql_version, r'^\s*(\d+\.\d+)'))
              WHEN REGEXP_CONTAINS(a.mysql_version, r'^\s*\d+\.\d+')
                THEN CONCAT('MySQL ', REGEXP_EXTRACT(a.mysql_version, r'^\s*(\d+\.\d+)'))
            END
          WHEN 'server_software' THEN
            CASE
              WHEN NULLIF(TRIM(a.server_software), '') IS NULL THEN NULL
              WHEN STARTS_WITH(LOWER(TRIM(a.server_software)), 'apache') THEN 'Apache'
              WHEN STARTS_WITH(LOWER(TRIM(a.server_software)), 'nginx') THEN 'nginx'
              WHEN STARTS_WITH(LOWER(TRIM(a.server_software)), 'litespeed') THEN 'LiteSpeed'
              ELSE 'other'
            END
          WHEN 'locale' THEN NULLIF(TRIM(a.locale), '')
          WHEN 'multisite' THEN CASE a.multisite WHEN TRUE THEN 'yes' WHEN FALSE THEN 'no' END
          WHEN 'theme' THEN NULLIF(TRIM(a.theme), '')
          WHEN 'country' THEN NULLIF(TRIM(a.country), '')
          WHEN 'hosting' THEN NULLIF(TRIM(a.hosting), '')
        END AS label
      FROM active AS a
      CROSS JOIN UNNEST([
        'project_version', 'wp_version', 'php_version', 'mysql_version', 'server_software', 'locale', 'multisite',
        'theme', 'country', 'hosting'
      ]) AS metric
      UNION ALL SELECT hash, 'deactivation_reasons', NULLIF(reason_id, '') FROM deactivations
      UNION ALL
      SELECT
        hash,
        'install_age_at_deactivation',
        CASE
          WHEN age IS NULL THEN NULL
          WHEN age < 1 THEN 'under 1 day'
          WHEN age <= 7 THEN '1-7 days'
          WHEN age <= 30 THEN '8-30 days'
          WHEN age <= 90 THEN '31-90 days'
          ELSE 'over 90 days'
        END
      FROM deactivation_ages
      -- Every active site of a project under each of its keys: no value of it is unknown.
      UNION ALL
      SELECT a.hash, CONCAT(@custom_field_prefix, k.key), v.label
      FROM active AS a
      JOIN custom_keys AS k ON k.hash = a.hash
      LEFT JOIN custom_values AS v ON v.hash = a.hash AND v.url = a.url AND v.key = k.key
    ),
    label_counts AS (
      SELECT hash, metric, label, COUNT(*) AS count
      FROM (SELECT hash, metric, IFNULL(label, @unknown_label) AS label FROM raw_labels)
      GROUP BY hash, metric, label
    ),
    -- The largest @max_labels labels of a distribution, the rest summed as 'other'. A custom
    -- field's value is named only when at least @min_label_sites sites hold it: a value one
    -- site sent (an email, a licence key) is never a label.
    folded AS (
      SELECT hash, metric, label, SUM(count) AS count
      FROM (
        SELECT
          hash,
          metric,
          IF(
            ROW_NUMBER() OVER (PARTITION BY hash, metric ORDER BY count DESC, label) <= @max_labels
              AND (NOT STARTS_WITH(metric, @custom_field_prefix) OR count >= @min_label_sites OR label = @unknown_label),
            label,
            'other'
          ) AS label,
          count
        FROM label_counts
      )
      GROUP BY hash, metric, label
    ),
    -- Co-installed plugins: the top @top_plugins slugs by the active sites that have them.
    plugins AS (
      SELECT hash, 'plugins' AS metric, slug AS label, COUNT(*) AS count
      FROM active, UNNEST(active.plugins) AS slug
      GROUP BY hash, slug
      QUALIFY ROW_NUMBER() OVER (PARTITION BY hash ORDER BY COUNT(*) DESC, slug) <= @top_plugins
    ),
    -- Minimum-requirements impact: per candidate minimum (major.minor), the active sites
    -- whose version is below it, compared as numbers (8.10 > 8.9); a version without a
    -- leading major.minor is counted once per software as unknown.
    candidates AS (
      SELECT 'PHP' AS software, version FROM UNNEST(SPLIT(@php_candidates, ',')) AS version
      UNION ALL SELECT 'WordPress', version FROM UNNEST(SPLIT(@wp_candidates, ',')) AS version
    ),
    candidate_numbers AS (
      SELECT
        software,
        version,
        CAST(REGEXP_EXTRACT(version, r'^(\d+)\.') AS INT64) AS major,
        CAST(REGEXP_EXTRACT(version, r'^\d+\.(\d+)$') AS INT64) AS minor
      FROM candidates
    ),
    site_versions AS (
      SELECT
        hash,
        software,
        SAFE_CAST(REGEXP_EXTRACT(version, r'^\s*(\d+)\.\d+') AS INT64) AS major,
        SAFE_CAST(REGEXP_EXTRACT(version, r'^\s*\d+\.(\d+)') AS INT64) AS minor
      FROM (
        SELECT a.hash, software, IF(software = 'PHP', a.php_version, a.wp_version) AS version
        FROM active AS a
        CROSS JOIN UNNEST(['PHP', 'WordPress']) AS software
      )
    ),
    stranded AS (
      SELECT s.hash, c.software, c.version, COUNTIF(s.major < c.major OR (s.major = c.major AND s.minor < c.minor)) AS count
      FROM site_versions AS s
      JOIN candidate_numbers AS c ON c.software = s.software
      GROUP BY s.hash, c.software, c.version
      UNION ALL
      SELECT hash, software, @unknown_label, COUNTIF(major IS NULL OR minor IS NULL)
      FROM site_versions
      GROUP BY hash, software
    ),
    requirements AS (
      SELECT hash, 'requirements_impact' AS metric, CONCAT(software, ' ', version) AS label, count FROM stranded
    ),
    -- Release health: per project version, the sites that sent a deactivate ping in the
    -- trailing window (the day and the @rate_days_before before it), and the sites that ran
    -- it (active that day, or deactivated in the window), each site by its latest track
    -- ping's version. Past @max_labels versions (by sites) the rest are summed as 'other'.
    release_sites AS (
      SELECT
        hash,
        IFNULL(NULLIF(TRIM(project_version), ''), @unknown_label) AS version,
        IF(deactivated_at >= TIMESTAMP(DATE_SUB(@day, INTERVAL @rate_days_before DAY)), 1, 0) AS left_site
      FROM state
      WHERE ((days_seen_bits & @window_mask) != 0 AND (deactivated_at IS NULL OR deactivated_at < last_seen_at))
        OR deactivated_at >= TIMESTAMP(DATE_SUB(@day, INTERVAL @rate_days_before DAY))
    ),
    release_counts AS (
      SELECT hash, version, SUM(left_site) AS deactivated, COUNT(*) AS sites FROM release_sites GROUP BY hash, version
    ),
    release_folded AS (
      SELECT hash, label, SUM(deactivated) AS deactivated, SUM(sites) AS sites
      FROM (
        SELECT
          hash,
          IF(ROW_NUMBER() OVER (PARTITION BY hash ORDER BY sites DESC, version) <= @max_labels, version, 'other')
            AS label,
          deactivated,
          sites
        FROM release_counts
      )
      GROUP BY hash, label
    ),
    release_health AS (
      SELECT hash, 'deactivation_rate_by_version' AS metric, CONCAT(@rate_events, ':', label) AS label,
        deactivated AS count
      FROM release_folded
      UNION ALL
      SELECT hash, 'deactivation_rate_by_version', CONCAT(@rate_sites, ':', label), sites FROM release_folded
    ),
    -- Weekly retention, rolling: the cohort k weeks back (k = 1 to @retention_weeks) is the
    -- sites first seen 7k to 7k+6 days before @day; retained are those of it active on @day.
    retention_cohorts AS (
      SELECT hash, url, DIV(DATE_DIFF(@day, first_seen, DAY), 7) AS weeks
      FROM `{dataset}.site_first_seen`
      WHERE first_seen <= DATE_SUB(@day, INTERVAL 7 DAY)
        AND DATE_DIFF(@day, first_seen, DAY) < 7 * (@retention_weeks + 1)
    ),
    retention_counts AS (
      SELECT c.hash, c.weeks, COUNTIF(a.url IS NOT NULL) AS retained, COUNT(*) AS sites
      FROM retention_cohorts AS c
      LEFT JOIN active AS a ON a.hash = c.hash AND a.url = c.url
      GROUP BY c.hash, c.weeks
    ),
    retention AS (
      SELECT hash, 'retention_weekly' AS metric, CONCAT(@rate_events, ':', CAST(weeks AS STRING)) AS label,
        retained AS count
      FROM retention_counts
      UNION ALL
      SELECT hash, 'retention_weekly', CONCAT(@rate_sites, ':', CAST(weeks AS STRING)), sites FROM retention_counts
    ),
    breakdowns AS (
      SELECT hash, metric, ARRAY_AGG(STRUCT(label, count) ORDER BY count DESC, label) AS breakdown
      FROM (
        SELECT * FROM folded
        UNION ALL SELECT * FROM plugins
        UNION ALL SELECT * FROM requirements
        UNION ALL SELECT * FROM release_health
        UNION ALL SELECT * FROM retention
      )
      GROUP BY hash, metric
    ),
    breakdown_metrics AS (
      SELECT metric FROM UNNEST([
        'deactivation_reasons', 'project_version', 'wp_version', 'php_version', 'mysql_version',
        'server_software', 'locale', 'multisite', 'theme', 'plugins', 'install_age_at_deactivation',
        'requirements_impact', 'deactivation_rate_by_version', 'retention_weekly', 'country', 'hosting'
      ]) AS metric
    ),
    figures AS (
      SELECT hash, metric, value, ARRAY<STRUCT<label STRING, count INT64>>[] AS breakdown FROM scalars
      UNION ALL
      SELECT p.hash, m.metric, CAST(NULL AS FLOAT64), IFNULL(b.breakdown, ARRAY<STRUCT<label STRING, count INT64>>[])
      FROM projects AS p
      CROSS JOIN breakdown_metrics AS m
      LEFT JOIN breakdowns AS b ON b.hash = p.hash AND b.metric = m.metric
      -- A custom field's figure exists where an active site holds its key.
      UNION ALL
      SELECT hash, metric, CAST(NULL AS FLOAT64), breakdown FROM breakdowns WHERE STARTS_WITH(metric, @custom_field_prefix)
    )
  SELECT * FROM figures
) AS source
ON FALSE
WHEN NOT MATCHED THEN
  INSERT (day, hash, metric, value, breakdown)
  VALUES (@day, source.hash, source.metric, source.value, source.breakdown)
WHEN NOT MATCHED BY SOURCE AND target.day = @day THEN
  DELETE
