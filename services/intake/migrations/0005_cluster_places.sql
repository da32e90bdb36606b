-- Cluster candidates by place: the lookup wants reports of one subclass in one building or one area within the
-- window. Ranging over (property, subclass, time) alone read every report of the subclass in the window and
-- dropped those elsewhere: ~300 rows per registration after a few minutes at 100/s, and all of a typhoon night's.
CREATE INDEX requests_cluster_building ON requests (property_id, subcategory, building, registered_at)
    WHERE subcategory IS NOT NULL AND building IS NOT NULL;
CREATE INDEX requests_cluster_area ON requests (property_id, subcategory, area, registered_at)
    WHERE subcategory IS NOT NULL AND area IS NOT NULL;
