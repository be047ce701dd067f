// A student's whole journey on a phone: first sign-in password change, an outcome with a brief counted as the
// server counts, files refused before and after upload, uploads with progress (drop and pick), submit, the
// teacher's return with its reason, re-upload, resubmit, certification, selection (勾選).
import {join} from 'node:path';
import {readFileSync} from 'node:fs';
import {scenario, signIn, shot, step, check, apiCall, tokenOf, FIXTURE, BASE} from './lib.mjs';

const {journey, files, password, first_password: firstPassword} = FIXTURE;
const OWN = 'journey-secret-2024';
const file = name => join(files, name);

/** Poll (reload) until the condition holds, with a deadline: intake learns of certification by events. */
async function untilAfterReload(page, locator, what) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (await locator.isVisible()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await page.reload();
    await page.locator('main h1').first().waitFor();
    await page.waitForLoadState('networkidle');
  }
}

async function teacherDecides(outcomeId, submission, decide) {
  const teacher = await tokenOf({school: journey.school, username: 'teacher01', password});
  const deadline = Date.now() + 20_000;
  for (;;) { // certification receives the submission by an event
    const record = await fetch(`${BASE}/api/v1/certification/outcomes/${outcomeId}`, {headers: {Authorization: `Bearer ${teacher}`}});
    if (record.ok && (await record.json()).submission === submission) break;
    if (Date.now() > deadline) throw new Error(`certification never saw submission ${submission}`);
    await new Promise(resolve => setTimeout(resolve, 100));
  }
  await decide(teacher);
}

await scenario('student_journey', async ({open}) => {
  const page = await open({phone: true});

  // First sign-in: the portal asks for a password of one's own before anything else.
  await signIn(page, {school: journey.school, username: journey.username, password: firstPassword});
  await page.getByRole('heading', {name: '變更密碼'}).waitFor();
  check(await page.getByText('首次登入，請先設定您自己的密碼。').isVisible(), 'the first sign-in notice');
  await shot(page, 'student-01-first-sign-in');
  await page.getByLabel('目前密碼').fill(firstPassword);
  await page.getByLabel('新密碼', {exact: true}).fill(OWN);
  await page.getByLabel('再次輸入新密碼').fill(OWN);
  await page.getByRole('button', {name: '變更密碼'}).click();
  await page.getByRole('heading', {name: '我的課程'}).waitFor();
  step('password changed at first sign-in');

  // A course outcome for the demo 國語文.
  const course = page.locator(`li.course[data-section="${journey.section_id}"]`);
  await shot(page, 'student-02-courses');
  await course.getByRole('button', {name: '新增課程學習成果'}).click();
  await page.locator('#brief').waitFor();
  const outcomeId = page.url().split('/').pop();

  // The brief: 100 characters as the server counts them (code points after stripping), not UTF-16 units.
  const brief = page.locator('#brief');
  const counter = page.locator('#brief-count');
  await brief.fill('🎉' + '字'.repeat(100));
  await counter.getByText('已輸入 101 / 100 字').waitFor();
  check(await counter.evaluate(el => el.classList.contains('over')), 'the counter marks 101 as too long');
  await page.getByRole('button', {name: '儲存簡述'}).click();
  await page.locator('#outcome-error').getByText('簡述最多 100 字。').waitFor();
  const exact = '  ' + '🎉' + '我在課堂上完成的學習單與反思，'.repeat(7).slice(0, 99) + '  ';
  await brief.fill(exact);
  await counter.getByText('已輸入 100 / 100 字').waitFor();
  const saved = page.waitForResponse(r => r.url().endsWith(`/outcomes/${outcomeId}`) && r.request().method() === 'PATCH');
  await page.getByRole('button', {name: '儲存簡述'}).click();
  check((await saved).status() === 200, 'the server takes a brief of 100 code points (one emoji, two UTF-16 units)');
  step('brief counted as the server counts');

  // Refused before a byte is sent: the type by extension, the size by the school's limit.
  let uploadsSent = 0;
  page.on('request', request => { if (request.method() === 'PUT' && request.url().includes('/files/')) uploadsSent++; });
  await page.locator('#file-input').setInputFiles([file('筆記.txt'), file('太大.pdf')]);
  await page.locator('li.upload[data-name="筆記.txt"]').getByText('檔案類型不符：文件限 PDF/JPG/PNG，影音限 MP3/MP4。').waitFor();
  await page.locator('li.upload[data-name="太大.pdf"]').getByText('檔案太大（4.5 MB），上限為 4.0 MB。').waitFor();
  check(uploadsSent === 0, 'nothing was sent for files refused before upload');
  step('type and size refused before upload');

  // Refused after: a file named .pdf that is no PDF; the server's problem message in the current language.
  const refused = page.waitForResponse(r => r.url().includes('/files/') && r.request().method() === 'PUT');
  await page.locator('#file-input').setInputFiles(file('偽裝.pdf'));
  check((await refused).status() === 415, 'intake judges the type by content');
  await page.locator('li.upload[data-name="偽裝.pdf"]').getByText('檔案類型不符（文件限 PDF/JPG/PNG，影音限 MP3/MP4），以檔案內容判斷。').waitFor();
  step("server's refusal shown");

  // Uploads with a progress bar per file: one dropped on the zone, one picked (a 3 MB video).
  await page.evaluate(() => {
    window.progressSeen = [];
    new MutationObserver(() => {
      for (const state of document.querySelectorAll('li.upload .state')) window.progressSeen.push(state.textContent);
    }).observe(document.querySelector('ul.uploads'), {subtree: true, childList: true, characterData: true});
  });
  const worksheet = readFileSync(file('學習單.pdf')).toString('base64');
  const dropped = await page.evaluateHandle(({name, data}) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([Uint8Array.from(atob(data), c => c.charCodeAt(0))], name, {type: 'application/pdf'}));
    return transfer;
  }, {name: '學習單.pdf', data: worksheet});
  await page.locator('#dropzone').dispatchEvent('drop', {dataTransfer: dropped});
  await page.locator('#file-input').setInputFiles(file('影片.mp4'));
  for (const name of ['學習單.pdf', '影片.mp4']) {
    const row = page.locator(`li.upload[data-name="${name}"]`);
    await row.getByText('上傳完成').waitFor();
    check(await row.locator('progress').evaluate(bar => bar.value === 100), `${name}: the bar is full`);
  }
  const seen = await page.evaluate(() => window.progressSeen);
  check(seen.some(text => /^已上傳 \d+%$/.test(text)), `progress was shown while uploading (saw ${[...new Set(seen)].join(', ')})`);
  await page.locator('#file-list').getByText('影片.mp4').waitFor();
  await shot(page, 'student-03-uploads');
  step('uploaded with progress');

  await page.getByRole('button', {name: '送出認證'}).click();
  await page.getByText('已送出，等待老師認證。').waitFor();
  await shot(page, 'student-04-submitted');
  step('submitted');

  // The teacher returns it with a reason; the student sees the reason.
  const reason = '請補上學習心得與參考資料。';
  await teacherDecides(outcomeId, 1, token => apiCall(`/api/v1/certification/outcomes/${outcomeId}/return`,
                                                      {token, method: 'POST', json: {reason}}));
  await untilAfterReload(page, page.locator('#return-reason'), 'the returned outcome');
  await page.locator('#return-reason').getByText(`退回原因：${reason}`).waitFor();
  await shot(page, 'student-05-returned');
  step('returned with the reason');

  // Re-upload and send again.
  await page.locator('#file-input').setInputFiles(file('補充照片.png'));
  await page.locator('li.upload[data-name="補充照片.png"]').getByText('上傳完成').waitFor();
  await page.locator('#file-list').getByText('補充照片.png').waitFor();
  await page.getByRole('button', {name: '重新送出認證'}).click();
  await page.getByText('已送出，等待老師認證。').waitFor();
  step('re-uploaded and resubmitted');

  // Certified, then selected (勾選) for the school year.
  await teacherDecides(outcomeId, 2, token => apiCall(`/api/v1/certification/outcomes/${outcomeId}/certify`,
                                                      {token, method: 'POST', json: {}}));
  await untilAfterReload(page, page.getByText(/老師已於 .* 認證。/), 'the certification');
  await page.getByRole('link', {name: '勾選'}).click();
  await page.getByRole('heading', {name: '勾選提交項目'}).waitFor();
  const box = page.locator(`#pick-${outcomeId}`);
  await box.check();
  await page.getByText('已勾選 1 / 6').waitFor();
  const put = page.waitForResponse(r => r.url().includes('/intake/selections/') && r.request().method() === 'PUT');
  await page.getByRole('button', {name: '儲存勾選'}).click();
  check((await put).status() === 200, 'the selection was saved');
  await page.getByText('勾選已儲存。').waitFor();
  await shot(page, 'student-06-selection');
  const token = await tokenOf({school: journey.school, username: journey.username, password: OWN});
  const selection = await apiCall('/api/v1/intake/selections/112', {token});
  check(selection.outcomes.map(o => o.id).includes(outcomeId), 'the server holds the selection');
  step('selected');

  // The portfolio as a PDF, with what was just certified and selected.
  await page.getByRole('link', {name: '我的課程'}).click();
  const downloading = page.waitForEvent('download', {timeout: 90_000});
  await page.getByRole('button', {name: '下載 PDF'}).click();
  const download = await downloading;
  const pdf = await (await import('node:fs/promises')).readFile(await download.path());
  check(download.suggestedFilename() === 'portfolio-journey01.pdf' && pdf.subarray(0, 5).toString() === '%PDF-',
        `the portfolio arrives as a PDF (${download.suggestedFilename()})`);
  step('portfolio exported');

  await page.getByRole('link', {name: '多元表現'}).click();
  await page.getByRole('heading', {name: '多元表現', level: 1}).waitFor();
  await page.getByLabel('類別').selectOption('service_learning');
  await page.getByLabel('名稱').fill('社區淨灘');
  await page.getByLabel('主辦單位').fill('新北市環保局');
  await page.getByLabel('開始日期').fill('2023-10-01');
  await page.getByLabel('結束日期').fill('2023-10-01');
  await page.getByLabel('時數').fill('4');
  await page.getByLabel('內容簡述').fill('和同學一起清理海灘。');
  await shot(page, 'student-07-performances');
  await page.getByRole('button', {name: '登錄', exact: true}).click();
  await page.getByRole('heading', {name: '社區淨灘', level: 1}).waitFor();
  await page.locator('#file-input').setInputFiles(file('補充照片.png'));
  await page.locator('#file-list').getByText('補充照片.png').waitFor();
  const changed = page.waitForResponse(r => r.url().includes('/intake/performances/') && r.request().method() === 'PATCH');
  await page.getByLabel('時數').fill('5.5');
  await page.getByRole('button', {name: '儲存修改'}).click();
  check((await changed).status() === 200, 'the performance was changed');
  await page.locator('dl.facts').getByText('5.5', {exact: true}).waitFor();
  await shot(page, 'student-08-performance');
  step('performance recorded with its proof');
});
