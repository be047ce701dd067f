"""File intake: 課程學習成果 (course outcomes) and 多元表現 (diverse performances) with their files."""
