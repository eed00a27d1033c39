"""The review workspace (`qa serve`): calls, recordings, scorecards, disputes, calibration,
the live floor and the audit log, for agents, reviewers, supervisors and admins."""

from qa.web.options import AccountOptions, DisputeOptions, WebOptions
from qa.web.server import serve
from qa.web.workspace import ROLES, User, Workspace

__all__ = ["ROLES", "AccountOptions", "DisputeOptions", "User", "WebOptions", "Workspace", "serve"]
