//! Mints a JWT for load tests and demos: `cargo run --release --example mint_jwt -- ALG KEY [SUB] [AUD]`
//! where ALG is HS256 (KEY = the secret) or RS256/ES256 (KEY = a PEM private key file). The
//! token carries `sub`, `exp` (+1 h) and `channels: ["bench", "bench-*"]` (what fanline-bench uses).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: mint_jwt HS256|RS256|ES256 SECRET|KEY.pem [SUB] [AUDIENCE]");
        std::process::exit(2);
    }
    let alg: Algorithm = match args[1].parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mint_jwt: bad algorithm {}: {e}", args[1]);
            std::process::exit(2);
        }
    };
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            Ok(EncodingKey::from_secret(args[2].as_bytes()))
        }
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => std::fs::read(&args[2])
            .map_err(|e| e.to_string())
            .and_then(|p| EncodingKey::from_rsa_pem(&p).map_err(|e| e.to_string())),
        Algorithm::ES256 | Algorithm::ES384 => std::fs::read(&args[2])
            .map_err(|e| e.to_string())
            .and_then(|p| EncodingKey::from_ec_pem(&p).map_err(|e| e.to_string())),
        other => Err(format!("{other:?} is not supported here")),
    };
    let key = key.unwrap_or_else(|e| {
        eprintln!("mint_jwt: {e}");
        std::process::exit(2);
    });
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + 3600;
    let sub = args.get(3).map(String::as_str).unwrap_or("bench");
    let mut claims = serde_json::json!({"sub": sub, "exp": exp, "channels": ["bench", "bench-*"]});
    if let Some(aud) = args.get(4) {
        claims["aud"] = serde_json::json!(aud);
    }
    match jsonwebtoken::encode(&Header::new(alg), &claims, &key) {
        Ok(t) => println!("{t}"),
        Err(e) => {
            eprintln!("mint_jwt: {e}");
            std::process::exit(1);
        }
    }
}
