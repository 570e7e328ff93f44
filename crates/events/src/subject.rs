//! Subjects (`sb.<domain>.<entity>.<verb>`, `crm.appointment.*`), domains and their streams, and
//! the namespace that lets tests run side by side on one NATS server.

/// An event domain: one JetStream stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    Crm,
    Video,
    Telephony,
    Signaling,
    Monitoring,
}

impl Domain {
    pub const ALL: [Domain; 5] = [
        Domain::Crm,
        Domain::Video,
        Domain::Telephony,
        Domain::Signaling,
        Domain::Monitoring,
    ];

    /// Stream name (`CRM`, `SB_VIDEO`, …).
    pub fn stream(self) -> &'static str {
        match self {
            Domain::Crm => "CRM",
            Domain::Video => "SB_VIDEO",
            Domain::Telephony => "SB_TELEPHONY",
            Domain::Signaling => "SB_SIGNALING",
            Domain::Monitoring => "SB_MONITORING",
        }
    }

    /// Subject prefix the stream captures (`crm`, `sb.video`, …).
    pub fn subject_root(self) -> &'static str {
        match self {
            Domain::Crm => "crm",
            Domain::Video => "sb.video",
            Domain::Telephony => "sb.telephony",
            Domain::Signaling => "sb.signaling",
            Domain::Monitoring => "sb.monitoring",
        }
    }

    /// The domain a subject belongs to.
    pub fn of_subject(subject: &str) -> Option<Domain> {
        Domain::ALL.into_iter().find(|d| {
            subject
                .strip_prefix(d.subject_root())
                .is_some_and(|rest| rest.starts_with('.'))
        })
    }
}

/// Where subjects and streams live. Production uses the empty namespace; each test uses its own
/// prefix, so many tests share one NATS server without seeing each other's events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    prefix: Option<String>,
}

impl Namespace {
    pub fn production() -> Self {
        Self { prefix: None }
    }

    /// `EVENTS_NAMESPACE`: empty in production; set it to run several stacks on one NATS.
    pub fn from_env(env: &sb_platform::Env<'_>) -> Result<Self, sb_platform::ConfigError> {
        let prefix: Option<String> = env.optional("EVENTS_NAMESPACE")?;
        match prefix {
            None => Ok(Self::production()),
            Some(prefix)
                if !prefix.is_empty()
                    && prefix
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) =>
            {
                Ok(Self::prefixed(&prefix))
            }
            Some(_) => Err(sb_platform::ConfigError::Malformed {
                name: "EVENTS_NAMESPACE",
                reason:
                    "use lowercase letters and digits only (it prefixes subjects and stream names)"
                        .to_owned(),
            }),
        }
    }

    /// A prefixed namespace: subjects become `<prefix>.<subject>`, streams `<PREFIX>_<STREAM>`.
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            prefix: Some(prefix.to_owned()),
        }
    }

    pub fn subject(&self, subject: &str) -> String {
        match &self.prefix {
            Some(prefix) => format!("{prefix}.{subject}"),
            None => subject.to_owned(),
        }
    }

    /// The base subject of a namespaced one (what is stored in the outbox and matched on).
    pub fn strip<'a>(&self, subject: &'a str) -> &'a str {
        match &self.prefix {
            Some(prefix) => subject
                .strip_prefix(prefix.as_str())
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(subject),
            None => subject,
        }
    }

    pub fn stream(&self, domain: Domain) -> String {
        match &self.prefix {
            Some(prefix) => format!("{}_{}", prefix.to_uppercase(), domain.stream()),
            None => domain.stream().to_owned(),
        }
    }

    /// `<service>-<purpose>`, the durable consumer name.
    pub fn consumer(&self, service: &str, purpose: &str) -> String {
        format!("{service}-{purpose}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_map_to_their_domain() {
        assert_eq!(
            Domain::of_subject("sb.video.call.started"),
            Some(Domain::Video)
        );
        assert_eq!(
            Domain::of_subject("crm.appointment.created"),
            Some(Domain::Crm)
        );
        assert_eq!(Domain::of_subject("sb.videox.call"), None);
        assert_eq!(Domain::of_subject("crmx.a"), None);
    }

    #[test]
    fn namespaces_prefix_subjects_and_streams() {
        let ns = Namespace::prefixed("t1");
        assert_eq!(
            ns.subject("sb.video.call.started"),
            "t1.sb.video.call.started"
        );
        assert_eq!(
            ns.strip("t1.sb.video.call.started"),
            "sb.video.call.started"
        );
        assert_eq!(ns.stream(Domain::Video), "T1_SB_VIDEO");
        let prod = Namespace::production();
        assert_eq!(
            prod.subject("crm.appointment.created"),
            "crm.appointment.created"
        );
        assert_eq!(prod.stream(Domain::Crm), "CRM");
    }
}
