-- The day each site sent its first track ping: @day for the sites that pinged
-- that day and are not known from an earlier day. Re-running any day leaves
-- the earliest day in place.
--
-- Reads: sites of @day, site_first_seen (one row per site ever seen).
MERGE `{dataset}.site_first_seen` AS target
USING (
  SELECT DISTINCT hash, url
  FROM `{dataset}.sites`
  WHERE received_at >= TIMESTAMP(@day) AND received_at < TIMESTAMP(DATE_ADD(@day, INTERVAL 1 DAY))
    AND status = 'active'
) AS source
ON target.hash = source.hash AND target.url = source.url
WHEN MATCHED AND target.first_seen > @day THEN
  UPDATE SET first_seen = @day
WHEN NOT MATCHED THEN
  INSERT (hash, url, first_seen) VALUES (source.hash, source.url, @day)
