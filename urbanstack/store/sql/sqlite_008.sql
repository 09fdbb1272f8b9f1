-- urbanstack SQLite schema, version 8: which (attribute type, value type) pairs each
-- attribute's history has ever held, as bits (1 << (kind * 4 + vt)), kept by every write
-- of an instance and never cleared (a superset). An attribute with a single numeric pair
-- (pm25 measures: Property numbers, and no deletion) is aggregated without measuring the
-- types of each period (see store/sqlite_aggregate.py).
CREATE TABLE IF NOT EXISTS history_shapes (
    pid    INTEGER PRIMARY KEY,
    shapes INTEGER NOT NULL
);
INSERT OR REPLACE INTO history_shapes (pid, shapes)
SELECT pid, sum(1 << (kind * 4 + vt)) FROM (
    SELECT DISTINCT pid, kind, vt FROM attr_instances
    UNION SELECT DISTINCT pid, kind, vt FROM recent_instances
) GROUP BY pid;
