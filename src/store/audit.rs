//! The audit logs: the app's (`stacks/<app>/log/audit.log`) and the
//! fleet's (`log/audit.log`), JSON lines; `events` reads them merged.
//! May touch: those two logs.

use super::*;

/// One line of an audit log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    pub key: String,
    pub fingerprint: String,
    pub action: String,
    pub detail: String,
}

impl Store {
    /// Append one line to the audit log of `app` (`stacks/<app>/log/audit.log`)
    /// or, for fleet-wide actions, `log/audit.log`. One JSON object per line,
    /// written with a single append so lines never interleave.
    pub fn audit(&self, app: Option<&str>, key: &KeyRecord, action: &str, detail: &str) {
        self.audit_as(app, &key.name, &key.fingerprint, action, detail);
    }

    /// What Quarry did by itself (the reconciler): recorded as key `quarry`.
    pub fn audit_system(&self, app: &str, action: &str, detail: &str) {
        self.audit_as(Some(app), "quarry", "-", action, detail);
    }

    /// A fleet-wide action Quarry took by itself (the cloud layer).
    pub fn audit_fleet(&self, action: &str, detail: &str) {
        self.audit_as(None, "quarry", "-", action, detail);
    }

    pub(super) fn audit_as(
        &self,
        app: Option<&str>,
        key: &str,
        fingerprint: &str,
        action: &str,
        detail: &str,
    ) {
        let event = Event {
            time: now_rfc3339(),
            app: app.map(str::to_string),
            key: key.to_string(),
            fingerprint: fingerprint.to_string(),
            action: action.to_string(),
            detail: detail.chars().take(2000).collect(),
        };
        let path = match app {
            Some(a) => self.app_dir(a).join("log").join("audit.log"),
            None => self.root.join("log").join("audit.log"),
        };
        let mut line = serde_json::to_string(&event).unwrap_or_default();
        line.push('\n');
        let write = || -> io::Result<()> {
            fs::create_dir_all(path.parent().expect("log dir"))?;
            let mut f = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(line.as_bytes())?;
            f.sync_data()
        };
        if let Err(e) = write() {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// Audit events, oldest first: one app's, or (for `None`) every app's and
    /// the fleet's.
    pub fn events(&self, app: Option<&str>) -> io::Result<Vec<Event>> {
        let mut paths = Vec::new();
        match app {
            Some(a) => paths.push(self.app_dir(a).join("log").join("audit.log")),
            None => {
                paths.push(self.root.join("log").join("audit.log"));
                for a in self.apps()? {
                    paths.push(self.app_dir(&a).join("log").join("audit.log"));
                }
            }
        }
        let mut events = Vec::new();
        for path in paths {
            let text = match fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            events.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Event>(l).ok()),
            );
        }
        events.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(events)
    }
}
