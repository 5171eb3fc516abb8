//! Building and running one hvt guest: the ELF-to-exit-code path.

use std::io::Write;

use kvm_ioctls::{IoEventAddress, Kvm, NoDatamatch, VcpuFd, VmFd};
use log::debug;

use crate::config::{NetRing, VmConfig};
use crate::error::Error;
use crate::hvt::{self, Hvt, Manifest, Ring, RingThread};
use crate::loader::Executable;
use crate::memory::{GuestRam, guest_mem_size};
use crate::seccomp::{DebugRules, Filters, ThreadKind};
use crate::signal::Kick;
use crate::signal::StopSignals;
use crate::slots::Slots;
use crate::vcpu::{self, ExitStatus, LazyRam};

const KVM_API_VERSION: i32 = 12;

/// A built hvt machine, ready to run: memory holds the kernel and boot info, devices are attached
/// and the vCPU sits at the entry point.
#[derive(Debug)]
pub struct HvtVm {
    // Field order is drop order: the vCPU and VM fds go before the memory they map.
    vcpu: VcpuFd,
    vm: VmFd,
    slots: Slots,
    _kvm: Kvm,
    hvt: Hvt,
    ram: GuestRam,
    stop: StopSignals,
    filters: Filters,
    debug: Debugging,
    /// The net ring, when the guest is offered one (its thread starts with the run).
    ring: Option<Ring>,
}

/// `--gdb` and `--dumpcore`: the stub's listening socket, the core directory and the kernel's
/// path (which names the core).
#[derive(Debug, Default)]
pub(crate) struct Debugging {
    pub(crate) gdb: Option<crate::debug::gdb::GdbListener>,
    pub(crate) cores: Option<crate::debug::coredump::CoreDir>,
    pub(crate) kernel: std::path::PathBuf,
}

impl Debugging {
    /// Binds the gdb port and opens the core directory the configuration asks for.
    pub(crate) fn open(cfg: &VmConfig) -> Result<Debugging, Error> {
        let gdb = match cfg.gdb {
            Some(port) => Some(crate::debug::gdb::GdbListener::bind(port)?),
            None => None,
        };
        let cores = match &cfg.dumpcore {
            Some(dir) => Some(crate::debug::coredump::CoreDir::open(dir)?),
            None => None,
        };
        Ok(Debugging {
            gdb,
            cores,
            kernel: cfg.kernel.clone(),
        })
    }

    /// Writes a core when `result` is an abort (HALT 255) or a fault; a failure is logged, never
    /// the run's result.
    pub(crate) fn dump_if_aborted(&self, result: &Result<ExitStatus, vcpu::VcpuError>, vcpu: &VcpuFd, mem: &vm_memory::GuestMemoryMmap) {
        let Some(cores) = &self.cores else { return };
        let signal = match result {
            Ok(ExitStatus::Halt(status)) if ExitStatus::Halt(*status).code() == 255 => libc::SIGABRT,
            Err(vcpu::VcpuError::Guest { .. }) => libc::SIGSEGV,
            _ => return,
        };
        match cores.write(&self.kernel, vcpu, mem, signal) {
            Ok(path) => log::warn!("guest core written to {}", path.display()),
            Err(e) => log::error!("{e}"),
        }
    }
}

impl HvtVm {
    /// Builds the machine described by `cfg`. `console` receives the guest's PUTS output.
    ///
    /// Everything that can fail because of the configuration or the kernel fails here, before the
    /// guest runs: a bad executable or manifest, a device that cannot be attached, memory or KVM
    /// errors.
    pub fn build(cfg: &VmConfig, console: Box<dyn Write + Send>) -> Result<HvtVm, Error> {
        let mem_size = guest_mem_size(cfg.mem_mib)?;
        let image =
            crate::host::files::read_regular(cfg.root(), &cfg.kernel, mem_size, "of guest memory").map_err(|source| Error::Kernel {
                path: cfg.kernel.clone(),
                source,
            })?;
        let loader_err = |source| Error::Loader {
            path: cfg.kernel.clone(),
            source,
        };
        let exe = Executable::parse(&image, crate::loader::HOST_MACHINE).map_err(loader_err)?;
        let mut manifest = Manifest::parse(exe.manifest_note())?;
        let devices = hvt::attach(&mut manifest, &cfg.nets, &cfg.blocks, cfg.root())?;
        let cmdline = cfg.cmdline.join(" ");
        let debug = Debugging::open(cfg)?;

        let kvm = Kvm::new().map_err(Error::KvmOpen)?;
        let version = kvm.get_api_version();
        if version != KVM_API_VERSION {
            return Err(Error::KvmApiVersion(version));
        }
        let vm = kvm.create_vm().map_err(|source| Error::Kvm {
            what: "KVM_CREATE_VM",
            source,
        })?;
        // The net ring goes in the 2 MiB above RAM (or the top 2 MiB of the largest RAM).
        let want_ring = cfg.net_ring == NetRing::On && devices.has_net();
        let layout = want_ring.then(|| hvt::ring::ring_layout(mem_size, arch::layout::MEM_MAX)).flatten();
        if want_ring && layout.is_none() {
            log::warn!("guest memory below 4 MiB: no net ring, the guest uses the NET hypercalls");
        }
        let (mem_size, reserved) = layout.unwrap_or((mem_size, 0));
        let mut ram = GuestRam::with_reserved(mem_size, reserved)?;
        arch::setup_vm(&vm)?;
        let kernel = exe.load(&mut ram).map_err(loader_err)?;
        // Slots for the image with the boot info and page tables below it, and for the stack at
        // the top; the rest on first touch where the architecture allows (see `slots`).
        let mut slots = Slots::new(&ram)?;
        slots.register(&vm, 0..kernel.kernel_end)?;
        slots.register(&vm, mem_size - 1..mem_size)?;
        if !cfg!(target_arch = "x86_64") {
            slots.register_rest(&vm)?;
        }
        let ring = if reserved == 0 { None } else { net_ring(&vm, &ram, &devices)? };
        if ring.is_some() {
            slots.register_reserved(&vm, &ram)?;
        }
        let vcpu = vm.create_vcpu(0).map_err(|source| Error::Kvm {
            what: "KVM_CREATE_VCPU",
            source,
        })?;
        let mapped = if ring.is_some() { ram.mapped_size() } else { mem_size };
        let info = arch::setup_vcpu(&kvm, &vm, &vcpu, ram.mmap(), mem_size, mapped, kernel.entry)?;
        let ring_gpa = ring.as_ref().map(Ring::gpa);
        hvt::write_boot_info(
            &ram,
            kernel.kernel_end,
            info.cpu_cycle_freq,
            &manifest,
            cmdline.as_bytes(),
            ring_gpa,
        )?;
        debug!(
            "built VM: {} MiB, entry {:#x}, kernel_end {:#x}, cycle freq {} Hz",
            mem_size >> 20,
            kernel.entry,
            kernel.kernel_end,
            info.cpu_cycle_freq
        );

        let stop = StopSignals::new(cfg.timeout).map_err(Error::Signals)?;
        let hvt = Hvt::new(ram.clone(), devices, console, stop.fd())?;
        let mut filters = Filters::new(cfg.seccomp, &[ThreadKind::HvtVcpu, ThreadKind::HvtRing])?;
        if let Some(cores) = &debug.cores {
            let rules = DebugRules {
                core_dir: Some(cores.raw_fd()),
                ..DebugRules::default()
            };
            filters.add_debug_rules(ThreadKind::HvtVcpu, &rules)?;
        }
        Ok(HvtVm {
            vcpu,
            vm,
            slots,
            _kvm: kvm,
            hvt,
            ram,
            stop,
            filters,
            debug,
            ring,
        })
    }

    /// Runs the guest until it halts (its status), a stop signal arrives, or it faults (an error).
    /// The thread's seccomp filter goes on before the first `KVM_RUN`.
    pub fn run(mut self) -> Result<ExitStatus, Error> {
        self.stop.install().map_err(Error::Signals)?;
        // gdb connects before the filter goes on (accepting is not in it); the filter then lets
        // this thread peek at that connection and no other.
        let gdb = match self.debug.gdb.take() {
            Some(listener) => match listener.accept(&self.stop)? {
                Some(conn) => Some(conn),
                None => return Ok(vcpu::stop_status(self.stop.received().unwrap_or(libc::SIGINT))),
            },
            None => None,
        };
        if let Some(conn) = &gdb {
            let rules = DebugRules {
                gdb_socket: Some(conn.raw_fd()),
                core_dir: self.debug.cores.as_ref().map(crate::debug::coredump::CoreDir::raw_fd),
            };
            self.filters.add_debug_rules(ThreadKind::HvtVcpu, &rules)?;
        }
        let ring = match self.ring.take() {
            Some(ring) => {
                crate::signal::install_kick_handler().map_err(Error::Signals)?;
                let vcpu_kick = Kick::this_thread(&mut self.vcpu.get_kvm_run().immediate_exit);
                let filters = self.filters.clone();
                let stop_event = self.stop.event().map_err(Error::Signals)?;
                let on_failure = move || {
                    // A POLL in progress returns (the stop eventfd is in its set), and KVM_RUN is
                    // left: the vCPU loop then sees the ring failed.
                    let _ = stop_event.write(1);
                    // SAFETY: the vCPU fd lives in `self` until after the ring thread is joined
                    // below, and the vCPU runs on this thread, which is never joined.
                    unsafe { vcpu_kick.kick() };
                };
                let thread = RingThread::start(ring, move || filters.install(ThreadKind::HvtRing), on_failure);
                Some(thread?)
            }
            None => None,
        };
        let installed = self.filters.install(ThreadKind::HvtVcpu);
        let ring_failed = || ring.as_ref().is_some_and(RingThread::failed);
        let mut lazy = LazyRam {
            vm: &self.vm,
            slots: &mut self.slots,
        };
        let status = match installed {
            Ok(()) => Ok(match gdb {
                Some(conn) => {
                    let view = crate::debug::gdb::GuestView {
                        mem: self.ram.mmap(),
                        read_only: self.ram.read_only_ranges(),
                    };
                    let (hvt, ram) = (&mut self.hvt, &self.ram);
                    crate::debug::gdb::run(conn, &mut self.vcpu, view, &self.stop, |exit| {
                        vcpu::handle_hvt_exit(exit, hvt, ram, &mut lazy)
                    })
                }
                None => vcpu::run_hvt(&mut self.vcpu, &mut self.hvt, &self.ram, &self.stop, &ring_failed, &mut lazy),
            }),
            Err(e) => Err(e),
        };
        // A broken ring is the run's outcome, whatever the vCPU loop said after being kicked.
        if let Some(ring) = ring {
            ring.stop()?;
        }
        let status = status?;
        debug!("guest RAM slots registered: {}", self.slots.registered_count());
        self.debug.dump_if_aborted(&status, &self.vcpu, self.ram.mmap());
        if log::log_enabled!(log::Level::Debug) {
            match self.ram.resident_bytes() {
                Ok(bytes) => debug!("guest memory resident: {} KiB", bytes / 1024),
                Err(e) => debug!("guest memory residency unknown: {e}"),
            }
        }
        Ok(status?)
    }
}

/// The net ring: an eventfd that the guest's kick signals (an ioeventfd), and the ring's host
/// side over a second descriptor of each tap. `None` when KVM refuses the ioeventfd: the guest
/// then uses the NET hypercalls, as with solo5-hvt.
fn net_ring(vm: &VmFd, ram: &GuestRam, devices: &hvt::Devices) -> Result<Option<Ring>, Error> {
    let taps = devices.ring_taps().map_err(|source| Error::Thread {
        what: "the net ring (a second tap descriptor)",
        source,
    })?;
    let ring = Ring::new(ram.clone(), ram.size(), taps).map_err(|source| Error::Thread {
        what: "the net ring (its kick eventfd)",
        source,
    })?;
    #[cfg(target_arch = "x86_64")]
    let kick = IoEventAddress::Pio(arch::layout::RING_KICK_PIO);
    #[cfg(target_arch = "aarch64")]
    let kick = IoEventAddress::Mmio(arch::layout::RING_KICK_MMIO);
    match vm.register_ioevent(ring.kick_fd(), &kick, NoDatamatch) {
        Ok(()) => Ok(Some(ring)),
        Err(e) => {
            log::warn!("KVM_IOEVENTFD for the net ring's kick failed ({e}): the guest uses the NET hypercalls");
            Ok(None)
        }
    }
}
