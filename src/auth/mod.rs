//! Who is calling: argon2 password hashes, HS256 login tokens, and extractors that make
//! each handler's signature say who may call it.

pub mod extract;
pub mod kiosk_key;
pub mod password;
pub mod revocation;
pub mod token;
