//! The S3-compatible bucket LiveKit egress writes recordings to: presigned GET URLs for players
//! (S3 then serves ranges, type and length itself) and deleting a recording's file.

use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action as _, UrlStyle};
use secrecy::ExposeSecret as _;
use url::Url;

use crate::config::S3Config;

/// How long a presigned play URL stays valid: long enough to start playing (a player keeps its
/// connection, or asks the media route again), short enough that a leaked URL soon stops working.
pub const PLAY_URL_TTL: Duration = Duration::from_secs(5 * 60);

/// Signed requests the service sends itself are used at once.
const REQUEST_URL_TTL: Duration = Duration::from_secs(60);

/// The media type of the files egress writes (`EncodedFileType::Mp4`).
const RECORDING_CONTENT_TYPE: &str = "video/mp4";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The bucket did not answer, or answered with a server error.
    #[error("recording storage unavailable: {0}")]
    Unavailable(String),
    /// The bucket refused the request (credentials, policy).
    #[error("recording storage refused the request: HTTP {0}")]
    Refused(u16),
}

#[derive(Debug, thiserror::Error)]
#[error("RECORDING_S3_ENDPOINT/BUCKET do not make a bucket URL: {0}")]
pub struct StorageConfigError(String);

/// The recordings bucket.
#[derive(Clone)]
pub struct RecordingStorage {
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl std::fmt::Debug for RecordingStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingStorage")
            .field("bucket", &self.bucket.name())
            .field("endpoint", &self.bucket.base_url().as_str())
            .finish_non_exhaustive()
    }
}

impl RecordingStorage {
    /// The bucket of `config`; `timeout` bounds each request the service sends to it.
    pub fn new(config: &S3Config, timeout: Duration) -> Result<Self, StorageConfigError> {
        let endpoint = if config.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", config.region)
        } else {
            config.endpoint.clone()
        };
        let endpoint =
            Url::parse(&endpoint).map_err(|e| StorageConfigError(format!("{endpoint}: {e}")))?;
        let style = if config.force_path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| StorageConfigError(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| StorageConfigError(e.to_string()))?;
        Ok(Self {
            bucket,
            credentials: Credentials::new(
                config.access_key.clone(),
                config.secret_key.expose_secret().to_owned(),
            ),
            http,
        })
    }

    /// A URL that GETs `key` for [`PLAY_URL_TTL`], answered as `video/mp4`.
    pub fn play_url(&self, key: &str) -> Url {
        let mut action = self.bucket.get_object(Some(&self.credentials), key);
        action
            .query_mut()
            .insert("response-content-type", RECORDING_CONTENT_TYPE);
        action.sign(PLAY_URL_TTL)
    }

    /// Deletes `key`. A key the bucket does not have counts as deleted (S3 answers 204 anyway;
    /// some compatible stores answer 404).
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(REQUEST_URL_TTL);
        let response = self
            .http
            .delete(url)
            .send()
            .await
            .map_err(|e| StorageError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Err(StorageError::Unavailable(format!("HTTP {status}")))
        } else {
            Err(StorageError::Refused(status.as_u16()))
        }
    }
}
