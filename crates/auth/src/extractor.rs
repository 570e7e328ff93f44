//! `Principal` as an actix-web extractor: a handler taking one is authenticated by construction.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest, web};
use sb_platform::Problem;

use crate::principal::Principal;
use crate::verify::{AuthError, JwtVerifier};

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        Problem::new(error.code()).with_detail(error.to_string())
    }
}

impl FromRequest for Principal {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(verifier) = req.app_data::<web::Data<JwtVerifier>>() else {
            return ready(Err(Problem::internal(std::io::Error::other(
                "JwtVerifier is not registered as app data",
            ))));
        };
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let result = verifier.verify_header(header).map_err(|error| {
            tracing::debug!(reason = %error, "rejected bearer token");
            Problem::from(error)
        });
        if let Ok(principal) = &result {
            tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
        }
        ready(result)
    }
}
