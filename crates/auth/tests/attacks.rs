//! Hostile and malformed tokens against a real service route: every one is a 401 problem+json,
//! none panics, and the valid ones for each supported algorithm pass.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sb_auth::{AuthConfig, JwtVerifier, KeyMaterial, Principal, Role};
use sb_platform::config::HttpConfig;
use sb_platform::{Application, Metrics, Readiness, ServiceSpec};
use serde_json::{Value, json};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/ec_public.pem");
const ED_PRIVATE: &str = include_str!("fixtures/ed25519_private.pem");
const ED_PUBLIC: &str = include_str!("fixtures/ed25519_public.pem");
const ORG: &str = "0190a000-0000-7000-8000-000000000001";
const USER: &str = "0190a000-0000-7000-8000-0000000000aa";

fn config(algorithm: Algorithm, key: KeyMaterial) -> AuthConfig {
    AuthConfig {
        algorithm,
        key,
        issuer: "https://auth.example".to_owned(),
        audience: "switchboard".to_owned(),
        leeway: Duration::from_secs(30),
    }
}

fn rs256() -> AuthConfig {
    config(
        Algorithm::RS256,
        KeyMaterial::PublicKeyPem(RSA_PUBLIC.to_owned()),
    )
}

struct Service {
    base: String,
    client: reqwest::Client,
}

/// A service with one authenticated route that echoes the principal.
fn serve(auth: &AuthConfig) -> Result<Service> {
    sb_platform::install_crypto_provider();
    let verifier = web::Data::new(JwtVerifier::new(auth)?);
    let spec = ServiceSpec {
        name: "auth-test",
        http: HttpConfig::ephemeral(),
        metrics: Metrics::new("auth-test")?,
        readiness: Readiness::new("auth-test", vec![]),
        openapi: utoipa::openapi::OpenApiBuilder::new().build(),
    };
    let app = Application::build(spec, move |cfg| {
        cfg.app_data(verifier.clone());
        cfg.route(
            "/me",
            web::get().to(|me: Principal| async move {
                HttpResponse::Ok().json(json!({"user": me.user_id, "org": me.org_id, "role": me.role, "teams": me.teams}))
            }),
        );
    })?;
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    Ok(Service {
        base,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
    })
}

impl Service {
    async fn call(&self, authorization: Option<&str>) -> Result<(u16, Value)> {
        let mut request = self.client.get(format!("{}/me", self.base));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        if status == 401 {
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        Ok((status, response.json().await?))
    }

    async fn bearer(&self, token: &str) -> Result<(u16, Value)> {
        self.call(Some(&format!("Bearer {token}"))).await
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "sub": USER, "org": ORG, "role": "CLOSER", "teams": [], "name": "Ada",
        "iss": "https://auth.example", "aud": "switchboard",
        "exp": now() + 600, "nbf": now() - 5, "iat": now() - 5,
    })
}

fn with(mut base: Value, key: &str, value: Value) -> Value {
    base[key] = value;
    base
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> Result<String> {
    Ok(jsonwebtoken::encode(&Header::new(alg), claims, key)?)
}

fn rsa_key() -> Result<EncodingKey> {
    Ok(EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes())?)
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test]
async fn valid_rs256_token_is_accepted() -> Result {
    let service = serve(&rs256())?;
    let (status, body) = service
        .bearer(&sign(Algorithm::RS256, &rsa_key()?, &claims())?)
        .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], USER);
    assert_eq!(body["org"], ORG);
    assert_eq!(body["role"], "CLOSER");
    // The scheme is case-insensitive.
    let token = sign(Algorithm::RS256, &rsa_key()?, &claims())?;
    assert_eq!(service.call(Some(&format!("bearer {token}"))).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn every_attack_is_a_401_with_a_stable_code() -> Result {
    let service = serve(&rs256())?;
    let rsa = rsa_key()?;
    let valid = sign(Algorithm::RS256, &rsa, &claims())?;
    let mut parts = valid.split('.');
    let (header, _payload, signature) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );

    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    let alg_none_signed = format!(
        "{}.{}.{signature}",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims())
    );
    // Classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let hs_with_public_key = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &claims(),
    )?;
    let tampered = format!(
        "{header}.{}.{signature}",
        b64(&with(claims(), "role", json!("ADMIN")))
    );
    let other_rsa_key = {
        // A token signed by someone else's key: the EC fixture, re-labelled RS256 will not verify.
        sign(
            Algorithm::ES256,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes())?,
            &claims(),
        )?
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "missing_token"),
        (
            "basic auth",
            Some("Basic dXNlcjpwYXNz".to_owned()),
            "missing_token",
        ),
        ("empty bearer", Some("Bearer ".to_owned()), "missing_token"),
        (
            "alg none, no signature",
            Some(format!("Bearer {alg_none}")),
            "invalid_token",
        ),
        (
            "alg none with a signature",
            Some(format!("Bearer {alg_none_signed}")),
            "invalid_token",
        ),
        (
            "HS/RS confusion",
            Some(format!("Bearer {hs_with_public_key}")),
            "invalid_token",
        ),
        (
            "wrong algorithm and key",
            Some(format!("Bearer {other_rsa_key}")),
            "invalid_token",
        ),
        (
            "wrong audience",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::RS256,
                    &rsa,
                    &with(claims(), "aud", json!("billing"))
                )?
            )),
            "invalid_token",
        ),
        (
            "wrong issuer",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::RS256,
                    &rsa,
                    &with(claims(), "iss", json!("https://evil.example"))
                )?
            )),
            "invalid_token",
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::RS256,
                    &rsa,
                    &with(claims(), "exp", json!(now() - 3600))
                )?
            )),
            "token_expired",
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::RS256,
                    &rsa,
                    &with(claims(), "nbf", json!(now() + 3600))
                )?
            )),
            "invalid_token",
        ),
        (
            "missing nbf",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, &rsa, &{
                    let mut c = claims();
                    c.as_object_mut().map(|o| o.remove("nbf"));
                    c
                })?
            )),
            "invalid_token",
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                sign(
                    Algorithm::RS256,
                    &rsa,
                    &with(claims(), "role", json!("ROOT"))
                )?
            )),
            "invalid_token",
        ),
        (
            "sub not a uuid",
            Some(format!(
                "Bearer {}",
                sign(Algorithm::RS256, &rsa, &with(claims(), "sub", json!("42")))?
            )),
            "invalid_token",
        ),
        (
            "tampered payload",
            Some(format!("Bearer {tampered}")),
            "invalid_token",
        ),
        (
            "garbage",
            Some("Bearer not.a.jwt".to_owned()),
            "invalid_token",
        ),
        (
            "garbage bytes",
            Some("Bearer !!!$$$%%%".to_owned()),
            "invalid_token",
        ),
        (
            "two segments",
            Some(format!("Bearer {header}.{signature}")),
            "invalid_token",
        ),
        (
            "10 kB token",
            Some(format!("Bearer {}", "a".repeat(10 * 1024))),
            "invalid_token",
        ),
        (
            "10 kB header of dots",
            Some(format!("Bearer {}", ".".repeat(10 * 1024))),
            "invalid_token",
        ),
    ];
    for (name, authorization, code) in cases {
        let (status, body) = service.call(authorization.as_deref()).await?;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["code"], code, "{name}: {body}");
    }
    // The service is still healthy after all of that.
    assert_eq!(service.bearer(&valid).await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn small_clock_skew_is_tolerated_large_is_not() -> Result {
    let service = serve(&rs256())?;
    let rsa = rsa_key()?;
    let just_expired = sign(
        Algorithm::RS256,
        &rsa,
        &with(claims(), "exp", json!(now() - 10)),
    )?;
    assert_eq!(service.bearer(&just_expired).await?.0, 200);
    let almost_valid = sign(
        Algorithm::RS256,
        &rsa,
        &with(claims(), "nbf", json!(now() + 10)),
    )?;
    assert_eq!(service.bearer(&almost_valid).await?.0, 200);
    let long_expired = sign(
        Algorithm::RS256,
        &rsa,
        &with(claims(), "exp", json!(now() - 120)),
    )?;
    assert_eq!(service.bearer(&long_expired).await?.0, 401);
    Ok(())
}

#[tokio::test]
async fn hs256_es256_and_eddsa_configurations_verify_their_own_tokens_only() -> Result {
    let secret = "a-shared-secret-that-is-long-enough-0123";
    let configs = [
        (
            config(Algorithm::HS256, KeyMaterial::Secret(secret.into())),
            Algorithm::HS256,
            EncodingKey::from_secret(secret.as_bytes()),
        ),
        (
            config(
                Algorithm::ES256,
                KeyMaterial::PublicKeyPem(EC_PUBLIC.to_owned()),
            ),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes())?,
        ),
        (
            config(
                Algorithm::EdDSA,
                KeyMaterial::PublicKeyPem(ED_PUBLIC.to_owned()),
            ),
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes())?,
        ),
    ];
    for (auth, alg, key) in configs {
        let service = serve(&auth)?;
        let (status, body) = service.bearer(&sign(alg, &key, &claims())?).await?;
        assert_eq!(status, 200, "{alg:?}: {body}");
        // The RS256 token of another issuer key is refused by each of them.
        let (status, _) = service
            .bearer(&sign(Algorithm::RS256, &rsa_key()?, &claims())?)
            .await?;
        assert_eq!(status, 401, "{alg:?} accepted an RS256 token");
    }
    let wrong_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-that-is-long-enough-xyz"),
        &claims(),
    )?;
    let service = serve(&config(
        Algorithm::HS256,
        KeyMaterial::Secret(secret.into()),
    ))?;
    assert_eq!(service.bearer(&wrong_secret).await?.0, 401);
    Ok(())
}

#[tokio::test]
async fn minted_tokens_round_trip_through_the_verifier() -> Result {
    let auth = AuthConfig::hs256("a-shared-secret-that-is-long-enough-0123");
    let minter = sb_auth::TokenMinter::from_config(&auth)?;
    let team = sb_auth::TeamId::new_v7();
    let token = minter.mint_for(
        Role::Manager,
        ORG.parse()?,
        USER.parse()?,
        &[team],
        Duration::from_secs(60),
    )?;
    let principal = JwtVerifier::new(&auth)?.verify(&token)?;
    assert_eq!(principal.role, Role::Manager);
    assert_eq!(principal.teams, vec![team]);
    assert_eq!(principal.org_id.to_string(), ORG);
    // An RS256 minter needs its private key.
    assert!(sb_auth::TokenMinter::from_config(&rs256()).is_err());
    let rs_minter = sb_auth::TokenMinter::with_private_key_pem(&rs256(), RSA_PRIVATE.as_bytes())?;
    let rs_token = rs_minter.mint_for(
        Role::Ceo,
        ORG.parse()?,
        USER.parse()?,
        &[],
        Duration::from_secs(60),
    )?;
    assert_eq!(
        JwtVerifier::new(&rs256())?.verify(&rs_token)?.role,
        Role::Ceo
    );
    Ok(())
}
