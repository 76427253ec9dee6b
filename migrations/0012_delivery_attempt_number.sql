-- The number of each try in the delivery attempt log (issue 13): the same
-- number the try carried to its receiver (the X-OpsDesk-Attempt header), so a
-- delivery a receiver saw twice can be matched to the tries that sent it. A
-- try whose record was lost (its sender died first) is sent again under the
-- same number. NULL on rows written before this column.
ALTER TABLE delivery_attempt_log ADD COLUMN attempt integer CHECK (attempt >= 1);
