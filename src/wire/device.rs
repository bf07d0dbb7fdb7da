//! Placeholder: the device layouts are added by their issue.
