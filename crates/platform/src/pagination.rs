//! The one pagination contract of every list route: `page` (1-based) and `pageSize` query
//! parameters in, a `Page` envelope (`items`, `page`, `pageSize`, `total`) out.
//! (Modelled on crates.io's `controllers/helpers/pagination.rs`, without its seek variant: our
//! lists are small enough for offsets.)

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{Ready, ready};
use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::{IntoParams, ToSchema};

use crate::error::Problem;
use crate::request::{Query, invalid_field};

/// `pageSize` when the client sends none.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// The largest `pageSize` accepted; a larger one is a 400, not silently clamped.
pub const MAX_PAGE_SIZE: i64 = 100;
/// The last `page` accepted: deeper offsets cost the database more than any client needs
/// (narrow the list with its filters instead).
pub const MAX_PAGE: i64 = 10_000;

/// The members of every list answer, sorted: tests of each service check their lists against
/// this one list, so the envelope cannot drift between services.
pub const ENVELOPE: [&str; 4] = ["items", "page", "pageSize", "total"];

/// Which page a client asked for: an extractor reading `page` and `pageSize` from the query
/// string, answering 400 `invalid_field` (naming the parameter) when either is malformed or out
/// of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    page: i64,
    page_size: i64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

impl PageRequest {
    /// Reads `page` and `pageSize` from `query`.
    pub fn from_query(query: &Query) -> Result<Self, Problem> {
        Ok(Self {
            page: query.int("page", 1, 1..=MAX_PAGE)?,
            page_size: query.int("pageSize", DEFAULT_PAGE_SIZE, 1..=MAX_PAGE_SIZE)?,
        })
    }

    /// A page of `page_size` items, `page` 1-based, both checked like a client's.
    pub fn new(page: i64, page_size: i64) -> Result<Self, Problem> {
        if !(1..=MAX_PAGE).contains(&page) {
            return Err(invalid_field(
                "page",
                format!("expected an integer from 1 to {MAX_PAGE}"),
            ));
        }
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(invalid_field(
                "pageSize",
                format!("expected an integer from 1 to {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(Self { page, page_size })
    }

    pub fn page(&self) -> i64 {
        self.page
    }

    pub fn page_size(&self) -> i64 {
        self.page_size
    }

    /// SQL `LIMIT`.
    pub fn limit(&self) -> i64 {
        self.page_size
    }

    /// SQL `OFFSET`.
    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.page_size
    }

    /// The envelope of a page the database cut (`LIMIT`/`OFFSET`), `total` counted apart.
    pub fn wrap<T>(&self, items: Vec<T>, total: i64) -> Page<T> {
        Page {
            items,
            page: self.page,
            page_size: self.page_size,
            total,
        }
    }

    /// The envelope of this page cut from a whole list already in memory (lists bounded by
    /// nature, like a call's lobby, or filtered by rules SQL cannot express).
    pub fn slice<T>(&self, all: Vec<T>) -> Page<T> {
        let total = i64::try_from(all.len()).unwrap_or(i64::MAX);
        let skip = usize::try_from(self.offset()).unwrap_or(usize::MAX);
        let take = usize::try_from(self.limit()).unwrap_or(usize::MAX);
        self.wrap(all.into_iter().skip(skip).take(take).collect(), total)
    }
}

impl FromRequest for PageRequest {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Query::parse(req).and_then(|query| Self::from_query(&query)))
    }
}

impl IntoParams for PageRequest {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let integer = |min: i64, max: i64, default: i64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Int64,
                )))
                .minimum(Some(min))
                .maximum(Some(max))
                .default(Some(default.into()))
        };
        let location = || parameter_in().unwrap_or(ParameterIn::Query);
        vec![
            ParameterBuilder::new()
                .name("page")
                .parameter_in(location())
                .required(Required::False)
                .description(Some("The page, 1-based"))
                .schema(Some(integer(1, MAX_PAGE, 1)))
                .build(),
            ParameterBuilder::new()
                .name("pageSize")
                .parameter_in(location())
                .required(Required::False)
                .description(Some("Items per page"))
                .schema(Some(integer(1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)))
                .build(),
        ]
    }
}

/// One page of a list, the same on every list route of every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// This page's items, in the list's documented order.
    pub items: Vec<T>,
    /// The page returned, 1-based (as asked).
    pub page: i64,
    /// The page size used (as asked, or the default).
    pub page_size: i64,
    /// How many items the whole list has with these filters; there is a next page while
    /// `page * pageSize < total`.
    pub total: i64,
}

impl<T> Page<T> {
    /// The same page with each item converted (store rows into views).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            page_size: self.page_size,
            total: self.total,
        }
    }

    /// Like `map`, for conversions that can fail.
    pub fn try_map<U, E>(self, f: impl FnMut(T) -> Result<U, E>) -> Result<Page<U>, E> {
        Ok(Page {
            items: self.items.into_iter().map(f).collect::<Result<_, E>>()?,
            page: self.page,
            page_size: self.page_size,
            total: self.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn extract(query: &str) -> Result<PageRequest, Problem> {
        let req = TestRequest::with_uri(&format!("/list?{query}")).to_http_request();
        PageRequest::from_query(&Query::parse(&req)?)
    }

    #[test]
    fn defaults_when_absent() -> Result<(), Problem> {
        assert_eq!(extract("")?, PageRequest::default());
        assert_eq!(extract("status=x")?.page_size(), DEFAULT_PAGE_SIZE);
        Ok(())
    }

    #[test]
    fn offset_is_zero_based() -> Result<(), Problem> {
        let page = extract("page=3&pageSize=20")?;
        assert_eq!((page.limit(), page.offset()), (20, 40));
        Ok(())
    }

    #[test]
    fn bad_parameters_are_named() {
        for (query, field) in [
            ("pageSize=0", "pageSize"),
            ("pageSize=101", "pageSize"),
            ("pageSize=ten", "pageSize"),
            ("page=0", "page"),
            ("page=-1", "page"),
            ("page=10001", "page"),
        ] {
            let Err(problem) = extract(query) else {
                panic!("{query} accepted");
            };
            assert_eq!(problem.code(), crate::Code::InvalidField, "{query}");
            assert_eq!(problem.body()["field"], field, "{query}");
        }
    }

    #[test]
    fn slices_in_memory_lists() -> Result<(), Problem> {
        let page = PageRequest::new(2, 2)?.slice(vec![1, 2, 3, 4, 5]);
        assert_eq!(page.items, vec![3, 4]);
        assert_eq!(page.total, 5);
        let past_the_end = PageRequest::new(4, 2)?.slice(vec![1, 2, 3]);
        assert!(past_the_end.items.is_empty());
        assert_eq!(past_the_end.total, 3);
        Ok(())
    }

    #[test]
    fn envelope_is_camel_case() -> Result<(), serde_json::Error> {
        let page = PageRequest::default().wrap(vec!["a"], 1);
        assert_eq!(
            serde_json::to_value(page)?,
            serde_json::json!({"items": ["a"], "page": 1, "pageSize": 50, "total": 1})
        );
        let value = serde_json::to_value(PageRequest::default().wrap(Vec::<u8>::new(), 0))?;
        let keys: Vec<&str> = value
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
            .collect();
        assert_eq!(keys, ENVELOPE);
        Ok(())
    }
}
