-- Version 3: the order in which tokens were issued, so that an account's oldest can be revoked
-- when it has more than `security.max_tokens_per_account` (created_at has whole seconds only).
ALTER TABLE tokens ADD COLUMN seq BIGSERIAL;
