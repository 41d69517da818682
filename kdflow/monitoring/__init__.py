"""After deployment: read a batch the champion sees, judge it and the champion on it, and act (`kdflow monitor`)."""
