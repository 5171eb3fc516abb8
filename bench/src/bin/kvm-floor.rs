//! The floor for boot-to-exit: the least a KVM monitor can do. Opens /dev/kvm, creates a VM and a
//! vCPU, maps MiB of memory (argument 1, default 512) without touching it, and runs one
//! instruction (`out`) to its first exit. With a second argument `hold` it then prints `ready` and
//! waits, VM and all, until its stdin closes: the floor of what an idle VM costs (density-bench).

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};
use unik_bench::arg;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

const CODE_GPA: u64 = 0x1000;

fn main() -> std::process::ExitCode {
    unik_bench::exit("kvm-floor", run(arg(1, 512)))
}

fn run(mib: u64) -> Result<(), String> {
    let kvm = Kvm::new().map_err(|e| format!("open /dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("create VM: {e}"))?;
    let size = usize::try_from(mib << 20).map_err(|e| e.to_string())?;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size)]).map_err(|e| e.to_string())?;
    let region = mem.iter().next().ok_or("no region")?;
    let host = region.get_host_address(MemoryRegionAddress(0)).map_err(|e| e.to_string())?;
    let slot = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: the region is owned by `mem`, which outlives the VM.
    unsafe { vm.set_user_memory_region(slot) }.map_err(|e| format!("set memory: {e}"))?;
    // out %al, $0x10
    mem.write_slice(&[0xe6, 0x10], GuestAddress(CODE_GPA)).map_err(|e| e.to_string())?;
    let mut vcpu = vm.create_vcpu(0).map_err(|e| format!("create vCPU: {e}"))?;
    let mut sregs = vcpu.get_sregs().map_err(|e| e.to_string())?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(|e| e.to_string())?;
    let regs = kvm_bindings::kvm_regs {
        rip: CODE_GPA,
        rflags: 2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(|e| e.to_string())?;
    match vcpu.run().map_err(|e| format!("run: {e}"))? {
        VcpuExit::IoOut(0x10, _) => {}
        other => return Err(format!("unexpected first exit: {other:?}")),
    }
    if std::env::args().nth(2).as_deref() == Some("hold") {
        use std::io::{Read, Write};
        println!("ready");
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        // Until the parent closes our stdin (or dies); the VM stays alive meanwhile.
        let _ = std::io::stdin().read(&mut [0u8; 1]);
    }
    Ok(())
}
