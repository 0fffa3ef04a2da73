//! A folder only SYSTEM and Administrators may open (the settings
//! folder, `%ProgramData%\Doorman`: the agent's key and identity live
//! there), owned by Administrators, its list inherited by every file in
//! it (those already there too), none from above; and the owner of a
//! kernel object (the consent pipe's server, as its clients check it).

use std::ffi::c_void;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::MetadataExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use windows_sys::Win32::Foundation::{HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_FILE_OBJECT, SE_KERNEL_OBJECT, SetNamedSecurityInfoW,
};
use windows_sys::Win32::Security::{
    ACL, DACL_SECURITY_INFORMATION, GetSecurityDescriptorDacl, GetSecurityDescriptorOwner,
    OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSID,
};

/// Owned by Administrators; full control for SYSTEM and Administrators,
/// on the folder and all it holds; nothing inherited from above.
pub const ADMINISTRATORS_ONLY: &str = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

const REPARSE_POINT: u32 = 0x400;

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// A security descriptor Windows allocated; freed when dropped.
struct Descriptor(*mut c_void);

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by Windows with LocalAlloc, freed once here.
        unsafe { LocalFree(self.0 as HLOCAL) };
    }
}

/// Gives the folder `path` the owner and access list `sddl` (in Windows'
/// SDDL form), and passes the list on to what the folder holds already.
/// A folder that is a reparse point (a junction someone made so that the
/// list lands elsewhere) is refused.
pub fn protect_folder(path: &Path, sddl: &str) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.file_attributes() & REPARSE_POINT != 0 {
        return Err(io::Error::other(
            "it is a link or junction, not a folder of its own",
        ));
    }
    let sddl: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
    let mut raw: *mut c_void = std::ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; on success `raw` is Windows'
    // allocation, owned by `Descriptor` from here.
    if unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut raw,
            std::ptr::null_mut(),
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    let descriptor = Descriptor(raw);
    let (mut owner, mut dacl): (PSID, *mut ACL) = (std::ptr::null_mut(), std::ptr::null_mut());
    let (mut present, mut defaulted) = (0, 0);
    // SAFETY: the descriptor is valid; the owner and list point into it
    // and are used while it lives. SetNamedSecurityInfoW (unlike
    // SetFileSecurityW) passes inheritable entries on to existing children.
    let error = unsafe {
        GetSecurityDescriptorOwner(descriptor.0, &mut owner, &mut defaulted);
        GetSecurityDescriptorDacl(descriptor.0, &mut present, &mut dacl, &mut defaulted);
        SetNamedSecurityInfoW(
            wide(path).as_ptr(),
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION
                | DACL_SECURITY_INFORMATION
                | PROTECTED_DACL_SECURITY_INFORMATION,
            owner,
            std::ptr::null_mut(),
            dacl,
            std::ptr::null(),
        )
    };
    match error {
        0 => Ok(()),
        code => Err(io::Error::from_raw_os_error(
            i32::try_from(code).unwrap_or(-1),
        )),
    }
}

/// The SID of the owner of the kernel object `handle` (a pipe), as text.
pub fn owner_of(handle: &impl AsRawHandle) -> io::Result<String> {
    let mut raw: *mut c_void = std::ptr::null_mut();
    let mut owner: PSID = std::ptr::null_mut();
    // SAFETY: the handle is open; on success `raw` is Windows' allocation
    // (owned by `Descriptor`) and `owner` points into it.
    let error = unsafe {
        GetSecurityInfo(
            handle.as_raw_handle(),
            SE_KERNEL_OBJECT,
            OWNER_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut raw,
        )
    };
    if error != 0 {
        return Err(io::Error::from_raw_os_error(
            i32::try_from(error).unwrap_or(-1),
        ));
    }
    let _descriptor = Descriptor(raw);
    crate::pipe_user::sid_text(owner)
}
