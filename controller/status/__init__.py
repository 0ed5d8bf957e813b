"""The status views: what the service and its store know, built once (``view``) and rendered as a
page (``page``), tables (``text``) or data (``status -o json|yaml``); ``live`` builds it in the running
service and serves the page."""
