//! Empty: this package exists to fetch the k8s-cri crate (see Cargo.toml).
