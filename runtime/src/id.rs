//! Container ids, validated as runc does: a single clean path component of safe characters.

use crate::error::ContainerError;

/// Longest id accepted (file-name limits leave room for the state files).
pub const MAX_ID_LEN: usize = 1024;

/// Checks that `id` is usable as a directory name under the root.
pub fn validate(id: &str) -> Result<(), ContainerError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ContainerError::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ids() {
        for good in ["a", "abc-123", "x_y.z+1", "ABC"] {
            validate(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é", &"x".repeat(MAX_ID_LEN + 1)] {
            assert!(
                matches!(validate(bad), Err(ContainerError::InvalidId(ref id)) if id == bad),
                "{bad:?}"
            );
        }
    }
}
