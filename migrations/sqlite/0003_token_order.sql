-- Version 3: the order in which an account's tokens were issued, so that the oldest can be revoked
-- when an account has more than `security.max_tokens_per_account` (created_at has whole seconds
-- only). Tokens issued before this step keep 0 and count as the oldest.
ALTER TABLE tokens ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
