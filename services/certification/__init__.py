"""Certification (認證): teachers certify or return their students' course outcomes."""
