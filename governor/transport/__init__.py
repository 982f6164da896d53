"""governor.transport"""
