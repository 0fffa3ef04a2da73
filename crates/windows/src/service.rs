//! The agent as a Windows service: installed to start with Windows as
//! LocalSystem (`doorman agent install-service`), removed
//! (`uninstall-service`), and run by the service control manager, which
//! starts `doorman.exe agent --service --config FILE` and later asks it
//! to stop.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;
use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

/// The service's name, as `sc` and the Services window show it.
pub const NAME: &str = "DoormanAgent";
const DISPLAY_NAME: &str = "Doorman agent";
const DESCRIPTION: &str = "Keeps this computer reachable through its Doorman server; sessions start only as its settings allow (email authorization, local consent).";

pub use windows_service::Error;

/// Installs the service: `exe` with `arguments`, started with Windows,
/// as LocalSystem; started now when `start`.
pub fn install(exe: PathBuf, arguments: Vec<OsString>, start: bool) -> Result<(), Error> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )?;
    let info = ServiceInfo {
        name: NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: arguments,
        dependencies: Vec::new(),
        account_name: None,
        account_password: None,
    };
    let service = manager.create_service(
        &info,
        ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS,
    )?;
    service.set_description(DESCRIPTION)?;
    if start {
        service.start::<&str>(&[])?;
    }
    Ok(())
}

/// Stops the service if it runs, and removes it.
pub fn uninstall() -> Result<(), Error> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    )?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        // Already stopping is as good.
        let _ = service.stop();
    }
    service.delete()
}

/// Whether the service is installed, and its state.
pub fn state() -> Result<Option<ServiceState>, Error> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    match manager.open_service(NAME, ServiceAccess::QUERY_STATUS) {
        Ok(service) => Ok(Some(service.query_status()?.current_state)),
        Err(Error::Winapi(error)) if error.raw_os_error() == Some(SERVICE_DOES_NOT_EXIST) => {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// ERROR_SERVICE_DOES_NOT_EXIST.
const SERVICE_DOES_NOT_EXIST: i32 = 1060;

/// ERROR_SERVICE_MARKED_FOR_DELETE: removed already, and gone once its
/// process has stopped and every handle on it is closed.
const SERVICE_MARKED_FOR_DELETE: i32 = 1072;

/// Whether `error` says the service was removed already and is going.
pub fn is_being_removed(error: &Error) -> bool {
    matches!(error, Error::Winapi(error) if error.raw_os_error() == Some(SERVICE_MARKED_FOR_DELETE))
}

/// What the service runs: given a receiver that yields once the service
/// control manager asks it to stop; returns when the agent has stopped,
/// whether it stopped as asked (an agent that failed is reported so, and
/// Windows' recovery settings may restart it).
type ServiceMain = Box<dyn Fn(mpsc::Receiver<()>) -> bool + Send + Sync>;

static SERVICE_MAIN: OnceLock<ServiceMain> = OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this thread to the service control manager, which runs `main`
/// on a thread of its own; returns once the service has stopped. Fails
/// when this process was not started as a service.
pub fn run(main: impl Fn(mpsc::Receiver<()>) -> bool + Send + Sync + 'static) -> Result<(), Error> {
    let _ = SERVICE_MAIN.set(Box::new(main));
    windows_service::service_dispatcher::start(NAME, ffi_service_main)
}

fn service_main(_arguments: Vec<OsString>) {
    let (stop, stopped) = mpsc::channel();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = stop.send(());
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(status) = service_control_handler::register(NAME, handler) else {
        return;
    };
    let report = |state, controls_accepted, exit_code| {
        let _ = status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        });
    };
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
        ServiceExitCode::Win32(0),
    );
    let stopped_well = SERVICE_MAIN.get().is_some_and(|main| main(stopped));
    let exit_code = if stopped_well {
        ServiceExitCode::Win32(0)
    } else {
        ServiceExitCode::ServiceSpecific(1)
    };
    report(
        ServiceState::Stopped,
        ServiceControlAccept::empty(),
        exit_code,
    );
}
