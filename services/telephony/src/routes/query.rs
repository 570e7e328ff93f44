//! Query parameters parsed by hand, so a bad one is named in the 400.

use actix_web::{HttpRequest, web};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::error::TelephonyError;

pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn of(req: &HttpRequest) -> Result<Self, TelephonyError> {
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| Self(q.into_inner()))
            .map_err(|e| TelephonyError::invalid("query", e.to_string()))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|v| !v.is_empty())
    }

    /// An RFC 3339 time, or a date (`2026-11-21`, midnight UTC).
    pub fn time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, TelephonyError> {
        self.get(name)
            .map(|raw| {
                DateTime::parse_from_rfc3339(raw)
                    .map(|t| t.with_timezone(&Utc))
                    .or_else(|_| {
                        NaiveDate::parse_from_str(raw, "%Y-%m-%d")
                            .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
                    })
                    .map_err(|_| {
                        TelephonyError::invalid(
                            name,
                            "expected an RFC 3339 time or a YYYY-MM-DD date",
                        )
                    })
            })
            .transpose()
    }

    pub fn uuid(&self, name: &'static str) -> Result<Option<Uuid>, TelephonyError> {
        self.get(name)
            .map(|raw| {
                Uuid::parse_str(raw).map_err(|e| TelephonyError::invalid(name, e.to_string()))
            })
            .transpose()
    }
}
