//! Placeholder: the xfr library is added by its issue.
