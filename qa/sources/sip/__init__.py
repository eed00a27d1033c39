"""SIP: messages and SDP on the wire (`message`, `sdp`) and the answering user agent (`ua`)."""

from qa.sources.sip.ua import RoleRule, SipOptions, SipSource, parse_sip_url

__all__ = ["RoleRule", "SipOptions", "SipSource", "parse_sip_url"]
