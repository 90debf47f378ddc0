"""Sources of the Python-backend models; the repository generator copies each to <model>/1/model.py."""
