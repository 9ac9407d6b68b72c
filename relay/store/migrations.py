"""Versioned schema migrations, applied in order, each once, each in one transaction.

The SQL sticks to what SQLite and PostgreSQL both accept (TEXT ids, BIGINT counters,
RFC 3339 TEXT timestamps, BYTEA for bytes: SQLite takes any type name and stores bytes as
a BLOB whatever the column's affinity) so both backends share this list.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE meta (
            name TEXT PRIMARY KEY,
            value BIGINT NOT NULL
        );
        INSERT INTO meta (name, value) VALUES ('state_version', 0);
        CREATE TABLE workspaces (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            plan TEXT NOT NULL CHECK (plan IN ('free', 'paid')),
            created_at TEXT NOT NULL
        );
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE memberships (
            user_id TEXT NOT NULL REFERENCES users(id),
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            role TEXT NOT NULL CHECK (role IN ('member', 'admin')),
            PRIMARY KEY (user_id, workspace_id)
        );
        CREATE TABLE relay_keys (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT,
            quota_tokens BIGINT,
            quota_period TEXT CHECK (quota_period IN ('day', 'month', 'total')),
            guardrail_id TEXT
        );
        CREATE INDEX relay_keys_workspace ON relay_keys (workspace_id);
        CREATE TABLE usage (
            key_id TEXT NOT NULL REFERENCES relay_keys(id),
            period TEXT NOT NULL,
            tokens BIGINT NOT NULL,
            PRIMARY KEY (key_id, period)
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE guardrails (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            name TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('observe', 'enforce')),
            rules TEXT NOT NULL,
            is_default INTEGER NOT NULL DEFAULT 0,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX guardrails_workspace ON guardrails (workspace_id);
        CREATE TABLE workspace_secrets (
            workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
            hmac_key TEXT NOT NULL
        );
        CREATE TABLE evidence_events (
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            seq BIGINT NOT NULL,
            id TEXT NOT NULL UNIQUE,
            at TEXT NOT NULL,
            plane TEXT NOT NULL CHECK (plane IN ('guardrail', 'firewall')),
            request_id TEXT NOT NULL,
            key_id TEXT,
            body TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (workspace_id, seq)
        );
        CREATE INDEX evidence_events_request ON evidence_events (request_id);
        """,
    ),
    (
        3,
        """
        CREATE TABLE firewall_policies (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            name TEXT NOT NULL,
            mode TEXT NOT NULL CHECK (mode IN ('shadow', 'enforce')),
            document TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX firewall_policies_workspace ON firewall_policies (workspace_id);
        """,
    ),
    (
        4,
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id),
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE INDEX sessions_user ON sessions (user_id);
        CREATE TABLE login_failures (
            email TEXT NOT NULL,
            address TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX login_failures_email ON login_failures (email, at);
        CREATE INDEX login_failures_address ON login_failures (address, at);
        CREATE INDEX login_failures_at ON login_failures (at);
        CREATE TABLE audit_log (
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            seq BIGINT NOT NULL,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            body TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (workspace_id, seq)
        );
        CREATE INDEX evidence_events_feed ON evidence_events (workspace_id, plane, seq);
        """,
    ),
    (
        5,
        """
        CREATE TABLE pack_installations (
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            framework TEXT NOT NULL,
            version TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('observe', 'live')),
            guardrail_id TEXT NOT NULL REFERENCES guardrails(id),
            firewall_policy_id TEXT NOT NULL REFERENCES firewall_policies(id),
            installed_at TEXT NOT NULL,
            live_at TEXT,
            PRIMARY KEY (workspace_id, framework)
        );
        """,
    ),
    (
        6,
        """
        CREATE TABLE residency (
            workspace_id TEXT PRIMARY KEY REFERENCES workspaces(id),
            region TEXT CHECK (region IN ('us', 'eu', 'uk', 'ap', 'cn', 'global')),
            updated_at TEXT NOT NULL
        );
        CREATE TABLE reports (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            framework TEXT NOT NULL,
            format TEXT NOT NULL CHECK (format IN ('pdf', 'json', 'csv')),
            region TEXT,
            created_at TEXT NOT NULL,
            evidence_sha256 TEXT NOT NULL,
            content_sha256 TEXT NOT NULL,
            kid TEXT NOT NULL
        );
        CREATE INDEX reports_workspace ON reports (workspace_id, created_at);
        CREATE TABLE report_files (
            -- files live in the partition of their report's region, an empty text for
            -- unstamped reports, which PostgreSQL can list-partition onto regional storage

            region TEXT NOT NULL,
            report_id TEXT NOT NULL REFERENCES reports(id),
            name TEXT NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (region, report_id, name)
        );
        CREATE TABLE shares (
            id TEXT PRIMARY KEY,
            workspace_id TEXT NOT NULL REFERENCES workspaces(id),
            report_id TEXT NOT NULL REFERENCES reports(id),
            token_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        """,
    ),
    (
        7,
        """
        CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            public_pem TEXT NOT NULL,
            published_at TEXT NOT NULL
        );
        """,
    ),
)

LATEST = MIGRATIONS[-1][0]
