print "an app of another age"
