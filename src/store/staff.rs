//! Staff members and their API tokens (hashed at rest).

use std::fmt;
use std::str::FromStr;

use super::{Store, StoreError, new_id};
use crate::clock::Timestamp;

/// What a staff member may do (DESIGN.md, "Support access").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The platform backend: numbers of sessions, sessions, call records.
    Provisioner,
    /// Support agents: disputes, grant requests, playback with a grant.
    Support,
    /// Approves grants (four-eyes), audits who listened.
    Supervisor,
    /// Reads the audit log.
    Auditor,
    /// Operates the service: the pool, subjects, exports.
    Admin,
}

impl Role {
    /// Every role, for help texts and tests.
    pub const ALL: [Role; 5] = [
        Role::Provisioner,
        Role::Support,
        Role::Supervisor,
        Role::Auditor,
        Role::Admin,
    ];

    /// The role's name as stored and as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provisioner => "provisioner",
            Role::Support => "support",
            Role::Supervisor => "supervisor",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role '{s}', expected one of: {}", names.join(", "))
            })
    }
}

/// A staff member (never carries the token or its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StaffMember {
    /// `stf_…`.
    pub id: String,
    /// Unique display name.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// When the token was issued.
    pub created_at: Timestamp,
    /// When the token was disabled, if it was.
    pub disabled_at: Option<Timestamp>,
}

type StaffRow = (String, String, String, i64, Option<i64>);

fn member(row: StaffRow) -> Result<StaffMember, StoreError> {
    let (id, name, role, created_at, disabled_at) = row;
    let role = role.parse().map_err(|what| StoreError::Corrupt {
        table: "staff",
        what,
    })?;
    Ok(StaffMember {
        id,
        name,
        role,
        created_at: Timestamp::from_millis(created_at),
        disabled_at: disabled_at.map(Timestamp::from_millis),
    })
}

impl Store {
    /// Stores a new staff member with the hash of their token.
    pub async fn add_staff(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<StaffMember, StoreError> {
        let m = StaffMember {
            id: new_id("stf"),
            name: name.to_owned(),
            role,
            created_at: now,
            disabled_at: None,
        };
        sqlx::query(
            "INSERT INTO staff (id, name, role, token_hash, created_at, disabled_at) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&m.id)
        .bind(&m.name)
        .bind(role.as_str())
        .bind(token_hash)
        .bind(now.as_millis())
        .execute(self.pool())
        .await?;
        Ok(m)
    }

    /// Finds the staff member whose token hashes to `token_hash`.
    pub async fn staff_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<StaffMember>, StoreError> {
        let row: Option<StaffRow> = sqlx::query_as(
            "SELECT id, name, role, created_at, disabled_at FROM staff WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(member).transpose()
    }

    /// Every staff member, by name.
    pub async fn list_staff(&self) -> Result<Vec<StaffMember>, StoreError> {
        let rows: Vec<StaffRow> = sqlx::query_as(
            "SELECT id, name, role, created_at, disabled_at FROM staff ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter().map(member).collect()
    }

    /// Disables the token of the member with this name or id. Returns the
    /// member, or `None` if there is none.
    pub async fn disable_staff(
        &self,
        name_or_id: &str,
        now: Timestamp,
    ) -> Result<Option<StaffMember>, StoreError> {
        sqlx::query(
            "UPDATE staff SET disabled_at = $2 \
             WHERE (name = $1 OR id = $1) AND disabled_at IS NULL",
        )
        .bind(name_or_id)
        .bind(now.as_millis())
        .execute(self.pool())
        .await?;
        let row: Option<StaffRow> = sqlx::query_as(
            "SELECT id, name, role, created_at, disabled_at FROM staff WHERE name = $1 OR id = $1",
        )
        .bind(name_or_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(member).transpose()
    }
}
