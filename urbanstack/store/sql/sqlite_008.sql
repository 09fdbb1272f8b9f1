-- urbanstack SQLite schema, version 8: which (attribute type, value type) pairs each
-- attribute's history has ever held, as bits (see sqlite_history.shape_bit: numbers count
-- as two value types, integers and reals), kept by every write of an instance and never
-- cleared (a superset). An attribute with a single numeric pair (pm25 measures: Property
-- reals, and no deletion) is aggregated without measuring the types of each period, and
-- read back in one formatted string (see store/sqlite_aggregate.py).
CREATE TABLE IF NOT EXISTS history_shapes (
    pid    INTEGER PRIMARY KEY,
    shapes INTEGER NOT NULL
);
INSERT OR REPLACE INTO history_shapes (pid, shapes)
SELECT pid, sum(1 << (kind * 8 + code)) FROM (
    SELECT DISTINCT pid, kind, CASE WHEN typeof(num) = 'real' THEN 4 ELSE vt END AS code
    FROM attr_instances
    UNION SELECT DISTINCT pid, kind, CASE WHEN typeof(num) = 'real' THEN 4 ELSE vt END
    FROM recent_instances
) GROUP BY pid;
