//! The browser class: what is stored about a person's browser, never the user agent itself.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Device {
    Desktop,
    Mobile,
    Tablet,
    Other,
}

impl Device {
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Desktop => "desktop",
            Device::Mobile => "mobile",
            Device::Tablet => "tablet",
            Device::Other => "other",
        }
    }
}

/// What is stored about a person's browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserClass {
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    pub device: Device,
}
