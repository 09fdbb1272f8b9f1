-- urbanstack SQLite schema, version 5: the attribute-value index no longer holds the
-- instances' createdAt and modifiedAt (q checks those on the entity documents).
DELETE FROM attr_values WHERE pid IN (
    SELECT pid FROM paths
    WHERE path GLOB '*' || char(31) || 'createdAt' || char(29) || 'dt'
       OR path GLOB '*' || char(31) || 'modifiedAt' || char(29) || 'dt'
);
