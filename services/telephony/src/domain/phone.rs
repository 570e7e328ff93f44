//! Phone numbers and Voice SDK identities: shared with monitoring, so they live in `sb_platform`.

pub use sb_platform::phone::{E164, client_identity, redact, user_of_client};
