//! Placeholder: the xfr layouts are added by their issue.
