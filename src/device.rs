//! Placeholder: the device library is added by its issue.
