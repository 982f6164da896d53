"""governor.daemon"""
