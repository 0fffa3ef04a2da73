//! A folder only SYSTEM and Administrators may open (the settings
//! folder, `%ProgramData%\Doorman`: the agent's key and identity live
//! there), owned by Administrators, its list given to every file in it
//! (those already there too), none from above; and the owner of a kernel
//! object (the consent pipe, as its clients check who created it).

use std::ffi::c_void;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::fs::MetadataExt;
use std::os::windows::io::AsRawHandle;
use std::path::Path;
use windows_sys::Win32::Foundation::{HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1,
    SE_KERNEL_OBJECT,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION,
    PSID, SetFileSecurityW,
};

/// Full control for SYSTEM and Administrators, on the folder and all it
/// comes to hold; nothing inherited from above.
pub const ADMINISTRATORS_ONLY: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

/// The same for a file already in the folder.
const FILE_ADMINISTRATORS_ONLY: &str = "D:P(A;;FA;;;SY)(A;;FA;;;BA)";

/// Administrators as the owner: a user who made the folder first would
/// otherwise stay its owner, and an owner may always rewrite the list.
const OWNED_BY_ADMINISTRATORS: &str = "O:BA";

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

/// Gives the folder `path` the access list `sddl` (in Windows' SDDL
/// form) and Administrators as its owner, and each file it holds already
/// the same list (Windows passes a folder's list on to new files only).
/// A folder that is a reparse point (a junction someone made so that the
/// list lands elsewhere) is refused, and so is such an entry in it.
pub fn protect_folder(path: &Path, sddl: &str) -> io::Result<()> {
    refuse_reparse_point(path)?;
    set(
        path,
        DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
        sddl,
    )?;
    set(path, OWNER_SECURITY_INFORMATION, OWNED_BY_ADMINISTRATORS)?;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?.path();
        refuse_reparse_point(&entry)?;
        if entry.is_file() {
            let parts = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION;
            set(&entry, parts, FILE_ADMINISTRATORS_ONLY)?;
        }
    }
    Ok(())
}

fn refuse_reparse_point(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.file_attributes() & REPARSE_POINT != 0 {
        return Err(io::Error::other(format!(
            "{} is a link or junction, not a file or folder of its own",
            path.display()
        )));
    }
    Ok(())
}

/// Sets the `parts` of `path`'s security that `sddl` gives.
fn set(path: &Path, parts: u32, sddl: &str) -> io::Result<()> {
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
    // SAFETY: the name is NUL-terminated, the descriptor valid.
    if unsafe { SetFileSecurityW(wide(path).as_ptr(), parts, descriptor.0) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
