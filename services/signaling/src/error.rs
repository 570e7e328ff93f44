//! The signaling service's HTTP errors: only shared ones, so [`ApiError`] itself.

pub use sb_platform::ApiError as SignalingError;
