//! Shape checks for walkers of provider request bodies: one place decides what counts as an
//! unexpected shape (a fail-open reason) when a request's JSON is not laid out as the API says.

use crate::fail_open::FailOpen;
use crate::json::{Kind, Value};

/// The elements of the array member `key`; absent or not an array is an unexpected shape.
pub fn required_array<'d>(
    root: Value<'d>,
    key: &str,
) -> Result<impl Iterator<Item = Value<'d>>, FailOpen> {
    match root.get(key) {
        Some(value) if value.kind() == Kind::Array => Ok(value.elements()),
        _ => Err(FailOpen::UnexpectedShape),
    }
}

/// `value` itself when it is an object; anything else is an unexpected shape.
pub fn object(value: Value<'_>) -> Result<Value<'_>, FailOpen> {
    if value.kind() == Kind::Object {
        Ok(value)
    } else {
        Err(FailOpen::UnexpectedShape)
    }
}

/// `object.key` as a string: absent is `None`, a non-string is an unexpected shape, and a
/// string with a lone surrogate escape is not JSON text we can use.
pub fn string_field(object: Value<'_>, key: &str) -> Result<Option<String>, FailOpen> {
    match object.get(key) {
        None => Ok(None),
        Some(value) if value.kind() == Kind::String => Ok(Some(
            value
                .decode_str()
                .map_err(|_| FailOpen::NotJson)?
                .into_owned(),
        )),
        Some(_) => Err(FailOpen::UnexpectedShape),
    }
}
