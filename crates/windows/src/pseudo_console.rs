//! A pseudo-console (ConPTY): a console with no window, whose screen is
//! read as terminal text from one pipe and whose keyboard is written to
//! another; and the one process started in it, inside a job object so
//! that ending the session ends every process the shell started.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::path::Path;
use windows_sys::Win32::Foundation::{HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Console::{
    COORD, ClosePseudoConsole, CreatePseudoConsole, HPCON, ResizePseudoConsole,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject,
};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::Threading::{
    CREATE_SUSPENDED, CREATE_UNICODE_ENVIRONMENT, DeleteProcThreadAttributeList,
    EXTENDED_STARTUPINFO_PRESENT, GetExitCodeProcess, INFINITE, InitializeProcThreadAttributeList,
    LPPROC_THREAD_ATTRIBUTE_LIST, PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE, PROCESS_INFORMATION,
    ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOEXW, UpdateProcThreadAttribute,
    WaitForSingleObject,
};

/// A pseudo-console of some size; closed (and every process still
/// attached to it ended by Windows) when dropped.
pub struct PseudoConsole {
    console: HPCON,
}

/// The pseudo-console's two ends: keystrokes go into `input`, the screen
/// (terminal text) comes out of `output`.
pub struct ConsolePipes {
    pub input: File,
    pub output: File,
}

/// A console's size, in character cells, as Windows takes it.
fn size(rows: u16, cols: u16) -> COORD {
    let cell = |n: u16| i16::try_from(n.max(1)).unwrap_or(i16::MAX);
    COORD {
        X: cell(cols),
        Y: cell(rows),
    }
}

/// An anonymous pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedHandle, OwnedHandle)> {
    let mut read: HANDLE = std::ptr::null_mut();
    let mut write: HANDLE = std::ptr::null_mut();
    // SAFETY: both out-pointers are valid; on success each handle is
    // new and ours alone, so owning it is sound.
    unsafe {
        if CreatePipe(&mut read, &mut write, std::ptr::null(), 0) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((
            OwnedHandle::from_raw_handle(read),
            OwnedHandle::from_raw_handle(write),
        ))
    }
}

/// An `HRESULT` as an error, when it is one.
fn checked(result: i32) -> io::Result<()> {
    if result < 0 {
        // Its bits, as Windows documents them (0x80004001: not implemented).
        Err(io::Error::other(format!(
            "HRESULT {:#010x}",
            result.cast_unsigned()
        )))
    } else {
        Ok(())
    }
}

impl PseudoConsole {
    /// A new pseudo-console of `rows` × `cols`, and its pipes.
    pub fn open(rows: u16, cols: u16) -> io::Result<(Self, ConsolePipes)> {
        let (console_in, input) = pipe()?;
        let (output, console_out) = pipe()?;
        let mut console: HPCON = 0;
        // SAFETY: the pipe handles are valid for the call (the console
        // duplicates what it keeps); the out-pointer is valid.
        checked(unsafe {
            CreatePseudoConsole(
                size(rows, cols),
                console_in.as_raw_handle(),
                console_out.as_raw_handle(),
                0,
                &mut console,
            )
        })?;
        // The console's own ends close here: the console holds them, and
        // the output pipe ends when the console does.
        drop((console_in, console_out));
        let pipes = ConsolePipes {
            input: File::from(input),
            output: File::from(output),
        };
        Ok((Self { console }, pipes))
    }

    /// Resizes the console; Windows redraws the screen at the new size.
    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        // SAFETY: `self.console` is open until drop.
        checked(unsafe { ResizePseudoConsole(self.console, size(rows, cols)) })
    }

    /// Starts `program` with `args` in this console, in `directory`, in a
    /// job of its own. Its standard streams are none of the agent's: the
    /// program finds the console (`console_host` opens it for the shell).
    pub fn spawn(
        &self,
        program: &Path,
        args: &[&OsStr],
        directory: Option<&Path>,
    ) -> io::Result<ConsoleProcess> {
        let args: Vec<Vec<u16>> = args.iter().map(|arg| arg.encode_wide().collect()).collect();
        let program: Vec<u16> = program.as_os_str().encode_wide().collect();
        let mut line = crate::command_line::command_line(&program, &args);
        let directory: Option<Vec<u16>> = directory.map(|d| wide(d.as_os_str()));
        let attributes = AttributeList::with_console(self.console)?;
        let mut startup = STARTUPINFOEXW::default();
        startup.StartupInfo.cb = u32::try_from(std::mem::size_of::<STARTUPINFOEXW>())
            .map_err(|_| io::Error::other("STARTUPINFOEXW is too large"))?;
        startup.StartupInfo.dwFlags = STARTF_USESTDHANDLES;
        startup.lpAttributeList = attributes.list();
        let mut process = PROCESS_INFORMATION::default();
        // SAFETY: every pointer is to a live, NUL-terminated buffer or
        // struct of this frame; the attribute list outlives the call.
        let created = unsafe {
            windows_sys::Win32::System::Threading::CreateProcessW(
                std::ptr::null(),
                line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
                EXTENDED_STARTUPINFO_PRESENT | CREATE_SUSPENDED | CREATE_UNICODE_ENVIRONMENT,
                std::ptr::null(),
                directory.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
                &startup.StartupInfo,
                &mut process,
            )
        };
        if created == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: CreateProcessW succeeded, so both handles are new and ours.
        let (handle, thread) = unsafe {
            (
                OwnedHandle::from_raw_handle(process.hProcess),
                OwnedHandle::from_raw_handle(process.hThread),
            )
        };
        let job = match kill_on_close_job(&handle) {
            Ok(job) => job,
            Err(error) => {
                // SAFETY: the process is ours and suspended; it never ran.
                unsafe {
                    windows_sys::Win32::System::Threading::TerminateProcess(process.hProcess, 1)
                };
                return Err(error);
            }
        };
        // SAFETY: the thread handle is open; the process was made suspended.
        unsafe { ResumeThread(thread.as_raw_handle()) };
        Ok(ConsoleProcess {
            process: handle,
            job,
        })
    }
}

impl Drop for PseudoConsole {
    fn drop(&mut self) {
        // SAFETY: opened in `open`, closed only here.
        unsafe { ClosePseudoConsole(self.console) };
    }
}

/// A job that ends every process in it once its handle closes; `process`
/// (still suspended) is its first.
fn kill_on_close_job(process: &OwnedHandle) -> io::Result<OwnedHandle> {
    // SAFETY: no attributes and no name; a null result is an error.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is new and ours.
    let job = unsafe { OwnedHandle::from_raw_handle(job) };
    let mut limits = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    let length = u32::try_from(std::mem::size_of_val(&limits))
        .map_err(|_| io::Error::other("job limits are too large"))?;
    // SAFETY: `limits` is the struct this information class names, of
    // the length given; both handles are open.
    unsafe {
        if SetInformationJobObject(
            job.as_raw_handle(),
            JobObjectExtendedLimitInformation,
            (&raw const limits).cast(),
            length,
        ) == 0
            || AssignProcessToJobObject(job.as_raw_handle(), process.as_raw_handle()) == 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(job)
}

/// A process started in a pseudo-console, and its job.
pub struct ConsoleProcess {
    process: OwnedHandle,
    job: OwnedHandle,
}

impl ConsoleProcess {
    /// Blocks until the process exits; its exit code.
    pub fn wait(&self) -> io::Result<u32> {
        // SAFETY: the process handle is open while `self` lives.
        unsafe {
            if WaitForSingleObject(self.process.as_raw_handle(), INFINITE) != WAIT_OBJECT_0 {
                return Err(io::Error::last_os_error());
            }
            let mut code = 0u32;
            if GetExitCodeProcess(self.process.as_raw_handle(), &mut code) == 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(code)
        }
    }

    /// Ends the process and everything it started.
    pub fn kill(&self) -> io::Result<()> {
        // SAFETY: the job handle is open while `self` lives.
        if unsafe { TerminateJobObject(self.job.as_raw_handle(), 1) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A process-thread attribute list holding one attribute: the console.
/// Words, not bytes, so that the list is aligned as Windows expects.
struct AttributeList {
    buffer: Vec<usize>,
}

impl AttributeList {
    fn with_console(console: HPCON) -> io::Result<Self> {
        let mut length = 0usize;
        // SAFETY: asking the size only (null list), as documented; the
        // call "fails" with the size written.
        unsafe { InitializeProcThreadAttributeList(std::ptr::null_mut(), 1, 0, &mut length) };
        let mut list = Self {
            buffer: vec![0usize; length.div_ceil(std::mem::size_of::<usize>())],
        };
        // SAFETY: the buffer has the size Windows asked for; the console
        // value is the handle itself, passed by value as documented for
        // PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE.
        unsafe {
            if InitializeProcThreadAttributeList(list.list(), 1, 0, &mut length) == 0 {
                list.buffer.clear();
                return Err(io::Error::last_os_error());
            }
            if UpdateProcThreadAttribute(
                list.list(),
                0,
                PROC_THREAD_ATTRIBUTE_PSEUDOCONSOLE as usize,
                console as *const std::ffi::c_void,
                std::mem::size_of::<HPCON>(),
                std::ptr::null_mut(),
                std::ptr::null(),
            ) == 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(list)
    }

    fn list(&self) -> LPPROC_THREAD_ATTRIBUTE_LIST {
        self.buffer.as_ptr().cast_mut().cast()
    }
}

impl Drop for AttributeList {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            // SAFETY: initialized in `with_console` (an empty buffer never was).
            unsafe { DeleteProcThreadAttributeList(self.list()) };
        }
    }
}

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(Some(0)).collect()
}
