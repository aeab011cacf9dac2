-- Step 0008: the log of account changes, so that every instance's token cache hears of a change
-- made through any instance (docs/SCALING.md, src/store/changes.rs).
--
-- Triggers append one row per changed account and statement: a token deleted or updated (logout,
-- cancel, password change, token cap, operator revoke, prune), an account updated in any column but
-- the login counters (failed_logins, locked_until, last_login_network), an account deleted, a pair
-- row inserted, updated or deleted (both its accounts; an update never changes a pair's ids). Each
-- such transaction takes a transaction-level advisory lock before it draws its sequence numbers,
-- so sequence order is commit order: a reader that has seen `seq` N has seen every change up to N.
-- `NOTIFY register_changes` tells the listening instances to read from their last `seq` on.
-- Rows older than an hour are pruned; an instance that was away longer forgets its whole cache.

CREATE TABLE account_changes (
    seq        BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL,
    at         BIGINT NOT NULL DEFAULT extract(epoch FROM now())::BIGINT
);
CREATE INDEX account_changes_at ON account_changes (at);

CREATE FUNCTION register_log_changes(ids BIGINT[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF ids IS NULL OR cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    -- "register" in ASCII, suffix 02 (src/store/postgres.rs: CHANGES_LOCK).
    PERFORM pg_advisory_xact_lock(8243108395577795842);
    INSERT INTO account_changes (account_id) SELECT unnest(ids);
    PERFORM pg_notify('register_changes', '');
END $$;

CREATE FUNCTION register_account_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM register_log_changes((
        SELECT array_agg(DISTINCT o.id) FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (o.user_name, o.type, o.device_type, o.des, o.password_hash, o.jid_node, o.jid_pwd,
               o.state, o.created_at, o.updated_at)
              IS DISTINCT FROM
              (n.user_name, n.type, n.device_type, n.des, n.password_hash, n.jid_node, n.jid_pwd,
               n.state, n.created_at, n.updated_at)));
    RETURN NULL;
END $$;

CREATE FUNCTION register_account_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM register_log_changes((SELECT array_agg(DISTINCT id) FROM old_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION register_token_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM register_log_changes((SELECT array_agg(DISTINCT account_id) FROM old_rows));
    RETURN NULL;
END $$;

CREATE FUNCTION register_pair_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM register_log_changes((
        SELECT array_agg(DISTINCT id) FROM (SELECT a AS id FROM new_rows UNION SELECT b FROM new_rows) p));
    RETURN NULL;
END $$;

CREATE FUNCTION register_pair_old() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM register_log_changes((
        SELECT array_agg(DISTINCT id) FROM (SELECT a AS id FROM old_rows UNION SELECT b FROM old_rows) p));
    RETURN NULL;
END $$;

CREATE TRIGGER pair_inserted AFTER INSERT ON bindings
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_pair_new();
CREATE TRIGGER pair_updated AFTER UPDATE ON bindings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_pair_old();
CREATE TRIGGER pair_deleted AFTER DELETE ON bindings
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_pair_old();
CREATE TRIGGER account_updated AFTER UPDATE ON accounts
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_account_updated();
CREATE TRIGGER account_deleted AFTER DELETE ON accounts
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_account_deleted();
CREATE TRIGGER token_deleted AFTER DELETE ON tokens
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_token_gone();
CREATE TRIGGER token_updated AFTER UPDATE ON tokens
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION register_token_gone();
