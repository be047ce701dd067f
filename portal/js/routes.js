// Which page answers which address, who may open it, and what each role sees in the navigation.
// A new screen is one import, one route and one navigation entry here.
import * as account from './views/account.js';
import * as student from './views/student.js';
import * as teacher from './views/teacher.js';
import * as staff from './views/staff.js';
import * as city from './views/city.js';
import * as exchange from './views/exchange.js';

export const TEACHER_ROLES = ['subject_teacher', 'homeroom_teacher', 'course_counsellor'];
export const STAFF_ROLES = ['registrar', 'curriculum', 'student_affairs', 'school_admin', 'counselling_office'];
const SCHOOL = '([0-9]{6})';

export const ROUTES = [
  {path: /^\/login$/, view: account.login},
  {path: /^\/password$/, view: account.password},
  {path: /^\/student\/courses$/, view: student.courses, roles: ['student']},
  {path: /^\/student\/outcomes\/([\w-]+)$/, view: student.outcome, roles: ['student']},
  {path: /^\/student\/performances$/, view: student.performances, roles: ['student']},
  {path: /^\/student\/performances\/([\w-]+)$/, view: student.performance, roles: ['student']},
  {path: /^\/student\/selection$/, view: student.selection, roles: ['student']},
  {path: /^\/student\/receipts$/, view: exchange.receipts, roles: ['student']},
  {path: /^\/notifications$/, view: account.notifications},
  {path: /^\/teacher\/queue$/, view: teacher.queue, roles: [...TEACHER_ROLES, 'curriculum', 'school_admin']},
  {path: /^\/teacher\/outcomes\/([\w-]+)$/, view: teacher.outcome, roles: [...TEACHER_ROLES, 'curriculum', 'school_admin']},
  {path: /^\/teacher\/substitutes$/, view: teacher.substitutes, roles: TEACHER_ROLES},
  {path: new RegExp(`^/school/${SCHOOL}/imports$`), view: staff.imports, roles: STAFF_ROLES},
  {path: new RegExp(`^/school/${SCHOOL}/windows$`), view: staff.windows, roles: STAFF_ROLES},
  {path: new RegExp(`^/school/${SCHOOL}/status$`), view: staff.status, roles: STAFF_ROLES},
  {path: new RegExp(`^/school/${SCHOOL}/users$`), view: staff.users, roles: STAFF_ROLES},
  {path: new RegExp(`^/school/${SCHOOL}/substitutes$`), view: staff.substitutes, roles: ['curriculum', 'school_admin']},
  {path: new RegExp(`^/school/${SCHOOL}/submissions$`), view: exchange.submissions, roles: STAFF_ROLES},
  {path: new RegExp(`^/school/${SCHOOL}/submissions/([\\w-]+)$`), view: exchange.submission, roles: STAFF_ROLES},
  {path: /^\/city$/, view: city.schools, roles: ['city_admin']},
];

/** The navigation of a signed-in user: every page their roles give them, in the order of their daily work. */
export function navFor(me) {
  const roles = me.user.roles;
  const has = list => list.some(role => roles.includes(role));
  const school = me.school?.code;
  const items = [];
  // A graduate keeps an account for the receipts of what was submitted, and nothing else.
  if (me.user.receipts_only) return roles.includes('student') ? [{href: '#/student/receipts', label: 'nav.receipts'}] : [];
  if (roles.includes('student')) {
    items.push({href: '#/student/courses', label: 'nav.courses'},
               {href: '#/student/performances', label: 'nav.performances'},
               {href: '#/student/selection', label: 'nav.selection'},
               {href: '#/student/receipts', label: 'nav.receipts'});
  }
  if (has(TEACHER_ROLES)) {
    items.push({href: '#/teacher/queue', label: 'nav.queue'}, {href: '#/teacher/substitutes', label: 'nav.mySubstitutes'});
  }
  if (school && has(STAFF_ROLES)) {
    items.push({href: `#/school/${school}/imports`, label: 'nav.imports'},
               {href: `#/school/${school}/windows`, label: 'nav.windows'},
               {href: `#/school/${school}/status`, label: 'nav.status'},
               {href: `#/school/${school}/submissions`, label: 'nav.submissions'},
               {href: `#/school/${school}/users`, label: 'nav.users'});
    if (has(['curriculum', 'school_admin'])) {
      items.push({href: `#/school/${school}/substitutes`, label: 'nav.substitutes'});
    }
  }
  if (roles.includes('city_admin')) items.push({href: '#/city', label: 'nav.schools'});
  if (school) items.push({href: '#/notifications', label: 'nav.notifications'});
  return items;
}
