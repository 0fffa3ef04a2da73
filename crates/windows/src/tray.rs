//! An icon in the notification area: a tooltip, a menu of a few items
//! (its left or right click), and balloon notifications, which Windows 10
//! and later show as toasts. The icon lives on a thread of its own with a
//! hidden window for its messages; the handle changes it from any thread
//! and removes it when dropped.

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use windows_sys::Win32::Foundation::{HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows_sys::Win32::System::LibraryLoader::GetModuleHandleW;
use windows_sys::Win32::UI::Shell::{
    NIF_ICON, NIF_INFO, NIF_MESSAGE, NIF_TIP, NIIF_INFO, NIM_ADD, NIM_DELETE, NIM_MODIFY,
    NOTIFYICONDATAW, Shell_NotifyIconW,
};
use windows_sys::Win32::UI::WindowsAndMessaging::{
    AppendMenuW, CreatePopupMenu, CreateWindowExW, DefWindowProcW, DestroyMenu, DestroyWindow,
    DispatchMessageW, GWLP_USERDATA, GetCursorPos, GetMessageW, GetWindowLongPtrW, IDI_APPLICATION,
    LoadIconW, MF_STRING, MSG, PostMessageW, PostQuitMessage, RegisterClassW, SetForegroundWindow,
    SetWindowLongPtrW, TPM_NONOTIFY, TPM_RETURNCMD, TrackPopupMenu, TranslateMessage, WM_APP,
    WM_CLOSE, WM_DESTROY, WM_LBUTTONUP, WM_RBUTTONUP, WNDCLASSW,
};

/// The icon's clicks, as its window hears them.
const ICON_EVENT: u32 = WM_APP + 1;
/// The tooltip or a notification changed: show it.
const REFRESH: u32 = WM_APP + 2;

/// What the icon shows, shared with its thread.
struct Shown {
    tip: String,
    balloon: Option<(String, String)>,
    menu: Vec<String>,
    chosen: Box<dyn Fn(usize) + Send>,
}

/// The icon; removed when dropped.
pub struct TrayIcon {
    /// The hidden window, as a number: posting to it is safe from any thread.
    window: isize,
    shown: Arc<Mutex<Shown>>,
    thread: Option<JoinHandle<()>>,
}

/// Shows an icon with the tooltip `tip` and a menu of `menu`'s items;
/// `chosen` hears the index of the item clicked, on the icon's thread.
/// Fails where there is no notification area (no desktop).
pub fn show(
    tip: &str,
    menu: Vec<String>,
    chosen: impl Fn(usize) + Send + 'static,
) -> io::Result<TrayIcon> {
    let shown = Arc::new(Mutex::new(Shown {
        tip: tip.to_string(),
        balloon: None,
        menu,
        chosen: Box::new(chosen),
    }));
    let (started, window) = std::sync::mpsc::channel();
    let for_thread = shown.clone();
    let thread = std::thread::Builder::new()
        .name("doorman tray".into())
        .spawn(move || run(for_thread, started))?;
    match window.recv() {
        Ok(Ok(window)) => Ok(TrayIcon {
            window,
            shown,
            thread: Some(thread),
        }),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => Err(io::Error::other("the tray's thread ended")),
    }
}

impl TrayIcon {
    /// Changes the tooltip.
    pub fn set_tip(&self, tip: &str) {
        if let Ok(mut shown) = self.shown.lock() {
            shown.tip = tip.to_string();
        }
        self.post(REFRESH);
    }

    /// Shows a notification by the icon (a toast on Windows 10 and later).
    pub fn notify(&self, title: &str, text: &str) {
        if let Ok(mut shown) = self.shown.lock() {
            shown.balloon = Some((title.to_string(), text.to_string()));
        }
        self.post(REFRESH);
    }

    fn post(&self, message: u32) {
        // SAFETY: posting to a window that may be gone fails harmlessly.
        unsafe { PostMessageW(self.window as HWND, message, 0, 0) };
    }
}

impl Drop for TrayIcon {
    fn drop(&mut self) {
        self.post(WM_CLOSE);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// Copies `text` into a fixed field, cut to fit with its NUL.
fn fill(field: &mut [u16], text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(field.len() - 1).collect();
    field[..units.len()].copy_from_slice(&units);
    field[units.len()] = 0;
}

/// The icon's thread: its window, the icon, and their messages until the
/// window closes.
fn run(shown: Arc<Mutex<Shown>>, started: std::sync::mpsc::Sender<io::Result<isize>>) {
    let class = wide("DoormanTray");
    let title = wide("Doorman");
    // SAFETY: the class and window names outlive the calls; the window's
    // user data is a leaked `Arc` reclaimed in WM_DESTROY, and the window
    // procedure reads it only while the window lives.
    unsafe {
        let instance = GetModuleHandleW(std::ptr::null());
        let class_info = WNDCLASSW {
            lpfnWndProc: Some(window_procedure),
            hInstance: instance,
            lpszClassName: class.as_ptr(),
            ..std::mem::zeroed()
        };
        // A second icon in the process finds the class registered.
        RegisterClassW(&class_info);
        let window = CreateWindowExW(
            0,
            class.as_ptr(),
            title.as_ptr(),
            0,
            0,
            0,
            0,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            instance,
            std::ptr::null(),
        );
        if window.is_null() {
            let _ = started.send(Err(io::Error::last_os_error()));
            return;
        }
        SetWindowLongPtrW(window, GWLP_USERDATA, Arc::into_raw(shown.clone()) as isize);
        let mut icon = icon_data(window);
        icon.uFlags = NIF_ICON | NIF_TIP | NIF_MESSAGE;
        icon.uCallbackMessage = ICON_EVENT;
        icon.hIcon = LoadIconW(std::ptr::null_mut(), IDI_APPLICATION);
        if let Ok(shown) = shown.lock() {
            fill(&mut icon.szTip, &shown.tip);
        }
        if Shell_NotifyIconW(NIM_ADD, &icon) == 0 {
            let _ = started.send(Err(io::Error::other(
                "no notification area to show an icon in",
            )));
            DestroyWindow(window);
            return;
        }
        let _ = started.send(Ok(window as isize));
        let mut message: MSG = std::mem::zeroed();
        while GetMessageW(&mut message, std::ptr::null_mut(), 0, 0) > 0 {
            TranslateMessage(&message);
            DispatchMessageW(&message);
        }
    }
}

/// The icon's identity: its window and number 1.
fn icon_data(window: HWND) -> NOTIFYICONDATAW {
    // SAFETY: NOTIFYICONDATAW is plain data; zero is its empty value.
    let mut icon: NOTIFYICONDATAW = unsafe { std::mem::zeroed() };
    icon.cbSize = u32::try_from(std::mem::size_of::<NOTIFYICONDATAW>()).unwrap_or(0);
    icon.hWnd = window;
    icon.uID = 1;
    icon
}

unsafe extern "system" fn window_procedure(
    window: HWND,
    message: u32,
    wparam: WPARAM,
    lparam: LPARAM,
) -> LRESULT {
    // SAFETY: the user data is the `Arc<Mutex<Shown>>` set at creation,
    // alive until WM_DESTROY takes it back; and `run` holds a clone of its
    // own while the window lives, so even a WM_DESTROY dispatched inside
    // the menu's loop leaves what `show_menu` borrows alive.
    let shown = unsafe { GetWindowLongPtrW(window, GWLP_USERDATA) } as *const Mutex<Shown>;
    match message {
        ICON_EVENT if !shown.is_null() => {
            let click = u32::try_from(lparam & 0xffff).unwrap_or(0);
            if click == WM_LBUTTONUP || click == WM_RBUTTONUP {
                // SAFETY: see above.
                unsafe { show_menu(window, &*shown) };
            }
            0
        }
        REFRESH if !shown.is_null() => {
            // SAFETY: see above.
            unsafe { refresh(window, &*shown) };
            0
        }
        WM_CLOSE => {
            // SAFETY: our own window, on its thread.
            unsafe { DestroyWindow(window) };
            0
        }
        WM_DESTROY => {
            let icon = icon_data(window);
            // SAFETY: the icon was added for this window; the user data
            // is cleared before its `Arc` is dropped.
            unsafe {
                Shell_NotifyIconW(NIM_DELETE, &icon);
                SetWindowLongPtrW(window, GWLP_USERDATA, 0);
                if !shown.is_null() {
                    drop(Arc::from_raw(shown));
                }
                PostQuitMessage(0);
            }
            0
        }
        // SAFETY: every other message as Windows would handle it.
        _ => unsafe { DefWindowProcW(window, message, wparam, lparam) },
    }
}

/// Shows the tooltip as it is now, and the notification waiting, if any.
unsafe fn refresh(window: HWND, shown: &Mutex<Shown>) {
    let mut icon = icon_data(window);
    icon.uFlags = NIF_TIP;
    if let Ok(mut shown) = shown.lock() {
        fill(&mut icon.szTip, &shown.tip);
        if let Some((title, text)) = shown.balloon.take() {
            icon.uFlags |= NIF_INFO;
            icon.dwInfoFlags = NIIF_INFO;
            fill(&mut icon.szInfoTitle, &title);
            fill(&mut icon.szInfo, &text);
        }
    }
    // SAFETY: the icon was added for this window.
    unsafe { Shell_NotifyIconW(NIM_MODIFY, &icon) };
}

/// The menu, at the pointer; the item chosen goes to `chosen`. The lock
/// is not held while the menu is open: its loop refreshes the icon.
unsafe fn show_menu(window: HWND, shown: &Mutex<Shown>) {
    let Ok(labels) = shown.lock().map(|shown| shown.menu.clone()) else {
        return;
    };
    // SAFETY: a menu of our own, destroyed before returning; labels
    // outlive the calls that copy them.
    let chosen = unsafe {
        let menu = CreatePopupMenu();
        if menu.is_null() {
            return;
        }
        for (index, label) in labels.iter().enumerate() {
            AppendMenuW(menu, MF_STRING, index + 1, wide(label).as_ptr());
        }
        let mut at = POINT { x: 0, y: 0 };
        GetCursorPos(&mut at);
        // Without it the menu stays open when the user clicks elsewhere.
        SetForegroundWindow(window);
        let chosen = TrackPopupMenu(
            menu,
            TPM_RETURNCMD | TPM_NONOTIFY,
            at.x,
            at.y,
            0,
            window,
            std::ptr::null(),
        );
        DestroyMenu(menu);
        chosen
    };
    if let Some(index) = usize::try_from(chosen).ok().and_then(|c| c.checked_sub(1))
        && let Ok(shown) = shown.lock()
    {
        // A panic must not unwind into Windows' caller of the window
        // procedure.
        let chosen = std::panic::AssertUnwindSafe(|| (shown.chosen)(index));
        if std::panic::catch_unwind(chosen).is_err() {
            handler_failed();
        }
    }
}

/// A menu item's handler panicked: it is dropped, the icon stays.
fn handler_failed() {
    eprintln!("doorman: the tray menu's handler failed");
}
