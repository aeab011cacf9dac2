-- Version 5: the client network of the account's last successful login. The account-wide lock
-- (security.lockout_account_threshold) does not apply to it, so guesses spread over many networks
-- cannot lock the owner out where the owner last logged in; that network keeps its own lock.
ALTER TABLE accounts ADD COLUMN last_login_network TEXT NOT NULL DEFAULT '';
