//! CPUID: the host's supported set, unfiltered, as solo5-hvt passes it.

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{Kvm, VcpuFd};

use crate::ArchError;

pub(crate) fn set_cpuid(kvm: &Kvm, vcpu: &VcpuFd) -> Result<(), ArchError> {
    let cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|source| ArchError::Kvm {
        what: "KVM_GET_SUPPORTED_CPUID",
        source,
    })?;
    vcpu.set_cpuid2(&cpuid).map_err(|source| ArchError::Kvm {
        what: "KVM_SET_CPUID2",
        source,
    })
}
