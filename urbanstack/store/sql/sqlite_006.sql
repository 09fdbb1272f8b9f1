-- urbanstack SQLite schema, version 6: the attribute-value index no longer holds the
-- instances' observedAt either (every measure rewrites it; q checks it on the entity
-- documents, as it does createdAt and modifiedAt since version 5).
DELETE FROM attr_values WHERE pid IN (
    SELECT pid FROM paths WHERE path GLOB '*' || char(31) || 'observedAt' || char(29) || 'dt'
);
