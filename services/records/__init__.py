"""Records service: terms and course sections, enrolments and grades, basic data, course counselling."""
