//! Request parsing every service shares: JSON bodies (optional where an API makes them
//! optional) and query parameters, with a 400 `invalid_field` that names the field at fault
//! (`displayName`, `participants[2]`, `pageSize`), and a 415 `unsupported_media_type` for a body
//! that is not JSON.

use std::ops::RangeInclusive;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, web};
use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::{Code, Problem};

/// 400 `invalid_field` naming `field` (also in the `field` member, for clients).
pub fn invalid_field(field: &str, detail: impl std::fmt::Display) -> Problem {
    Problem::new(Code::InvalidField)
        .with_detail(format!("{field}: {detail}"))
        .with_extension("field", field.to_owned())
}

/// 415 `unsupported_media_type`: the route takes JSON.
pub fn not_json() -> Problem {
    Problem::new(Code::UnsupportedMediaType).with_detail("expected Content-Type: application/json")
}

/// The request's Content-Type: `None` when absent, `Some(true)` when JSON (`application/json` or
/// any `application/*+json`, whatever its parameters), `Some(false)` for anything else.
fn content_type_is_json(req: &HttpRequest) -> Option<bool> {
    let value = req.headers().get(header::CONTENT_TYPE)?;
    let Ok(value) = value.to_str() else {
        return Some(false);
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    Some(
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|subtype| subtype.ends_with("+json") && !subtype.contains('/')),
    )
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path.is_empty() || path == "." {
            "body".to_owned()
        } else {
            path
        };
        invalid_field(&field, error.into_inner())
    })
}

async fn read(req: HttpRequest, mut payload: Payload) -> Result<web::Bytes, Problem> {
    web::Bytes::from_request(&req, &mut payload)
        .await
        .map_err(|error| {
            if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(Code::PayloadTooLarge).with_detail("the request body is too large")
            } else {
                invalid_field("body", error)
            }
        })
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// A JSON body that may be absent (empty), in which case `T::default()` is used. A body, or a
/// Content-Type, that is there must be JSON (else 415).
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            let json = content_type_is_json(&req);
            if json == Some(false) {
                return Err(not_json());
            }
            let bytes = read(req, payload).await?;
            if is_blank(&bytes) {
                return Ok(Self(T::default()));
            }
            if json.is_none() {
                return Err(not_json());
            }
            parse(&bytes).map(Self)
        })
    }
}

/// A required JSON body, with a JSON Content-Type (else 415).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = Problem;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let (req, payload) = (req.clone(), payload.take());
        Box::pin(async move {
            if content_type_is_json(&req) != Some(true) {
                return Err(not_json());
            }
            let bytes = read(req, payload).await?;
            if is_blank(&bytes) {
                return Err(invalid_field("body", "a JSON body is required"));
            }
            parse(&bytes).map(Self)
        })
    }
}

/// Optional `from` and `to` bounds.
pub type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Query parameters, parsed one by one so a bad one is named in the 400.
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(req: &HttpRequest) -> Result<Self, Problem> {
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| Self(q.into_inner()))
            .map_err(|e| invalid_field("query", e))
    }

    /// The parameter's value; an empty one (`?status=`, as forms send) counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// An RFC 3339 time, or a date (`2026-11-21`, midnight UTC).
    pub fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
        self.get(name)
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&Utc))
                    .or_else(|_| {
                        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                            .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                    })
                    .map_err(|_| {
                        invalid_field(name, "expected an RFC 3339 time or a YYYY-MM-DD date")
                    })
            })
            .transpose()
    }

    /// An integer within `range`, `default` when absent.
    pub fn int(
        &self,
        name: &str,
        default: i64,
        range: RangeInclusive<i64>,
    ) -> Result<i64, Problem> {
        let Some(raw) = self.get(name) else {
            return Ok(default);
        };
        raw.parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                invalid_field(
                    name,
                    format!(
                        "expected an integer from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// A UUID.
    pub fn uuid(&self, name: &str) -> Result<Option<uuid::Uuid>, Problem> {
        self.get(name)
            .map(|raw| uuid::Uuid::parse_str(raw).map_err(|e| invalid_field(name, e)))
            .transpose()
    }

    /// Any `FromStr` value, its error shown to the client.
    pub fn value<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, Problem>
    where
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .map(|raw| raw.parse::<T>().map_err(|e| invalid_field(name, e)))
            .transpose()
    }

    /// `from` and `to` times, `to` not before `from`.
    pub fn window(&self) -> Result<Window, Problem> {
        let (from, to) = (self.time("from")?, self.time("to")?);
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Err(invalid_field("to", "must not be before from"));
        }
        Ok((from, to))
    }
}

#[cfg(test)]
mod tests {
    /// One parser per concern: services take bodies and queries through this module (415 and
    /// `invalid_field` included), never actix's extractors, nor a copy of their own.
    #[test]
    fn services_parse_requests_only_with_the_platform() {
        let services = concat!(env!("CARGO_MANIFEST_DIR"), "/../../services");
        let mut stack = vec![std::path::PathBuf::from(services)];
        let mut checked = 0;
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    // tests build requests, they do not parse them
                    if !path.ends_with("tests") {
                        stack.push(path);
                    }
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                checked += 1;
                for extractor in [
                    ": web::Json<",
                    ": web::Query<",
                    ": web::Form<",
                    ": Json<",
                    ": Form<",
                    "impl FromRequest for Query",
                    "impl<T: DeserializeOwned",
                ] {
                    assert!(
                        !text.contains(extractor),
                        "{} parses a request with `{extractor}`: use sb_platform::request",
                        path.display()
                    );
                }
            }
        }
        assert!(checked > 20, "only {checked} files under {services}");
    }
}
