//! Nova keypairs (`os-keypairs`), minimal: a user's keypairs by name —
//! list, show, import or generate, delete — so that servers can be booted
//! with `key_name` (an unknown one is Nova's 400 "Invalid key_name provided.").

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Reply;
use crate::{
    digest,
    http::{Ctx, Mv},
    reply::{py_repr, schema_error},
    state::{Fail, Keypair, State},
};

pub(super) fn handle(st: &mut State, operation: &str, ctx: &Ctx, name: &str) -> Reply {
    let user = ctx.caller.user_id.clone();
    match operation {
        "nova.list_keypairs" => {
            let list: Vec<Value> = st
                .keypairs
                .iter()
                .filter(|k| k.user_id == user)
                .map(|k| json!({"keypair": render(k, ctx.mv, false)}))
                .collect();
            Ok((StatusCode::OK, json!({ "keypairs": list })))
        }
        "nova.get_keypair" => st
            .keypairs
            .iter()
            .find(|k| k.name == name && k.user_id == user)
            .map(|k| (StatusCode::OK, json!({"keypair": render(k, ctx.mv, true)})))
            .ok_or_else(|| not_found(name, &user)),
        "nova.delete_keypair" => {
            let before = st.keypairs.len();
            st.keypairs
                .retain(|k| !(k.name == name && k.user_id == user));
            if st.keypairs.len() == before {
                return Err(not_found(name, &user));
            }
            Ok((StatusCode::ACCEPTED, Value::Null))
        }
        _ => create(st, ctx, &user),
    }
}

fn not_found(name: &str, user: &str) -> Fail {
    Fail::not_found(format!("Keypair {name} not found for user {user}"))
}

fn render(k: &Keypair, mv: Mv, detail: bool) -> Value {
    let mut body =
        json!({"name": k.name, "public_key": k.public_key, "fingerprint": k.fingerprint});
    if mv >= Mv(2, 2) {
        body["type"] = json!(k.key_type);
    }
    if detail {
        body["user_id"] = json!(k.user_id);
        body["deleted"] = json!(false);
        body["id"] = json!(1);
    }
    body
}

fn create(st: &mut State, ctx: &Ctx, user: &str) -> Reply {
    let body: Value = ctx.json()?;
    let kp = &body["keypair"];
    let Some(name) = kp["name"].as_str().filter(|n| !n.trim().is_empty()) else {
        return Err(Fail::bad_request(schema_error(
            "keypair",
            kp,
            "'name' is a required property",
        )));
    };
    let imported = kp["public_key"].as_str().map(str::to_owned);
    if imported.is_none() && ctx.mv >= Mv(2, 92) {
        return Err(Fail::bad_request(schema_error(
            "keypair",
            kp,
            "'public_key' is a required property",
        )));
    }
    if st
        .keypairs
        .iter()
        .any(|k| k.name == name && k.user_id == user)
    {
        return Err(Fail::conflict(format!("Key pair '{name}' already exists.")));
    }
    let key_type = kp["type"].as_str().unwrap_or("ssh").to_owned();
    if !matches!(key_type.as_str(), "ssh" | "x509") {
        return Err(Fail::bad_request(schema_error(
            "type",
            &kp["type"],
            &format!("{} is not one of ['ssh', 'x509']", py_repr(&kp["type"])),
        )));
    }
    let generated = imported.is_none();
    let public_key = imported.unwrap_or_else(|| {
        format!(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} Generated-by-Nova",
            st.uuid().replace('-', "")
        )
    });
    let hex = digest::md5_hex(public_key.as_bytes());
    let fingerprint = hex
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let k = Keypair {
        name: name.to_owned(),
        user_id: user.to_owned(),
        public_key,
        fingerprint,
        key_type,
    };
    let mut out = render(&k, ctx.mv, false);
    out["user_id"] = json!(user);
    if generated {
        out["private_key"] = json!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nsimulated\n-----END OPENSSH PRIVATE KEY-----\n"
        );
    }
    st.keypairs.push(k);
    let status = if ctx.mv >= Mv(2, 2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, json!({ "keypair": out })))
}
