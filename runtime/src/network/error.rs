//! Why a container's network could not be wired.

/// Why the guest's network device could not be spliced to the container interface.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// More than one network device in the manifest.
    #[error("the unikernel declares {0} network devices; one per container is supported")]
    TooManyDevices(usize),
    /// A manifest net device, and no namespace of the container's own.
    #[error(
        "the unikernel declares network device '{device}' but the container shares the host's network namespace \
         (config.json has none, as with `docker run --network host`); unik does not hand a host interface to a \
         guest unless it is named with the {annotation} annotation"
    )]
    HostNamespace {
        /// The manifest's device.
        device: String,
        /// The annotation that names an interface.
        annotation: &'static str,
    },
    /// The interfaces could not be listed.
    #[error("listing interfaces: {0}")]
    Listing(std::io::Error),
    /// No interface to take.
    #[error("the container has no {wanted} that is up with an IPv4 address (it has: {})", seen.join(", "))]
    NoInterface {
        /// "free interface" or "interface 'NAME'".
        wanted: String,
        /// The interfaces it has.
        seen: Vec<String>,
    },
    /// An interface that went away.
    #[error("{0}: no such interface")]
    NoSuchInterface(String),
    /// A property of the interface could not be read.
    #[error("{name}: {what}: {source}")]
    Property {
        /// The interface.
        name: String,
        /// "MAC address", "MTU".
        what: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The ingress qdisc could not be added.
    #[error("{name}: adding the ingress qdisc: {source}")]
    Ingress {
        /// The interface.
        name: String,
        /// What the kernel said.
        source: std::io::Error,
    },
    /// The tap could not be created.
    #[error(transparent)]
    Tap(#[from] vmm::host::tap::TapError),
    /// The tap and the interface could not be spliced.
    #[error("splicing {tap} to {interface}: {source}")]
    Splice {
        /// The tap.
        tap: String,
        /// The container interface.
        interface: String,
        /// What the kernel said.
        source: std::io::Error,
    },
}
